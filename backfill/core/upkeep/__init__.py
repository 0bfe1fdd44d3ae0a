"""Periodic upkeep beside the worker loop: stale locks, the dead-worker sweeper and cron."""
