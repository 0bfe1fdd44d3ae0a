"""The core's named SQL statements, one .sql file per operation (loaded by backfill.core.statements)."""
