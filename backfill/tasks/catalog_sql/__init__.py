"""SQL files of the task catalog: its migration line ("tasks"), read by backfill.core.migrations.own, and its
statements (catalog.sql), loaded by backfill.core.statements."""
