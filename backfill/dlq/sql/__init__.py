"""SQL files of the dead-letter queue: its migration line ("dlq"), read by backfill.core.migrations.own, and its
statements (entries, batches, requeue, move), loaded by backfill.core.statements."""
