"""From the runner's settings to the core's terms: each lane's ``WorkerOptions``, and the task registry with
``BACKFILL_JOB_TIMEOUT_SECONDS`` applied."""

from __future__ import annotations

import dataclasses

from backfill.core import TaskRegistry, WorkerOptions
from backfill.lanes.lane import Lane
from backfill.settings import BackfillSettings

# WorkerOptions' default, as a constant: building WorkerOptions() at import read GRAPHILE_WORKER_SCHEMA, so a bad
# value there broke every import of backfill instead of being reported when used.
LOOP_BLOCK_THRESHOLD: float | None = 1.0


def lane_options(settings: BackfillSettings, lane: Lane, *, upkeep: bool) -> WorkerOptions:
    """The options of the core worker that runs ``lane``; ``upkeep`` for the one lane that runs the process's
    shared upkeep (stale locks, sweeper, cron, loop monitor)."""
    job_slice = lane.job_slice
    return WorkerOptions(
        schema=settings.schema_name,
        concurrency=lane.concurrency,
        poll_interval=settings.poll_interval_seconds,
        shutdown_grace_period=settings.shutdown_grace_seconds,
        heartbeat_interval=settings.heartbeat_interval_seconds,
        dead_worker_after=settings.dead_worker_after_seconds,
        sweep_interval=settings.sweep_interval,
        max_recoveries=settings.max_recoveries,
        prepared_statements=settings.prepared_statements,
        upkeep=upkeep,
        min_priority=job_slice.min_priority,
        max_priority=job_slice.max_priority,
        forbidden_flags=job_slice.forbidden_flags,
        required_flags=job_slice.required_flags,
        # One loop monitor per process: the lanes share the loop, so one report per stall.
        loop_block_threshold=LOOP_BLOCK_THRESHOLD if upkeep else None,
        lane=lane.name,  # recorded with the worker's heartbeat row: `backfill workers` shows it
    )


def with_default_timeout(registry: TaskRegistry, settings: BackfillSettings) -> TaskRegistry:
    """``registry`` with ``BACKFILL_JOB_TIMEOUT_SECONDS`` given to the tasks that declare no timeout."""
    default = settings.job_timeout_seconds
    if default is None:
        return registry
    return TaskRegistry(
        definition if definition.timeout is not None else dataclasses.replace(definition, timeout=default)
        for definition in registry
    )
