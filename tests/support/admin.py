"""Settings for the runners of the admin API's and the dashboard's tests."""

from __future__ import annotations

from typing import Any

from backfill.settings import BackfillSettings


def runner_settings(database_url: str, **overrides: Any) -> BackfillSettings:
    """Small lanes (2 fast slots, 3 bulk), a short shutdown grace, and the control poll and the dead-letter sweep
    every 0.2 s, so that a test waiting on a pause or a dead letter waits tenths of a second."""
    values: dict[str, Any] = {
        "fast_queue_concurrency": 2,
        "bulk_queue_concurrency": 3,
        "shutdown_grace_seconds": 2.0,
        "control_poll_seconds": 0.2,
        "dlq_sweep_interval_seconds": 0.2,
    }
    return BackfillSettings.load(env_file=None, database_url=database_url, **{**values, **overrides})
