"""Helpers shared by the worker integration tests (``tests/integration/test_worker_*.py``, ``test_cli.py``)."""
