"""Statements of the metrics (loaded by backfill.core.statements)."""
