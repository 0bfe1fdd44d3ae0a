"""Statements of the lanes (loaded by backfill.core.statements)."""
