"""SQL files of the task catalog's migration line ("tasks"), read by backfill.core.migrations.own."""
