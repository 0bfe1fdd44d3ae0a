"""Runnable examples; each is smoke-tested by tests/integration/test_examples.py."""
