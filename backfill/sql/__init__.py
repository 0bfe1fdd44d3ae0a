"""Statements of the layer's top-level modules (loaded by backfill.core.statements)."""
