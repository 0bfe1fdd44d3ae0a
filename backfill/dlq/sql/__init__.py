"""SQL files of the dead-letter queue's migration line ("dlq"), read by backfill.core.migrations.own."""
