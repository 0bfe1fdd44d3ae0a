"""Periodic upkeep that runs beside the worker loop, and the list of it a worker starts.

* Graphile's last resort for locks whose owner vanished: every 8-10 minutes (jittered, so workers started
  together do not sweep together), unlock jobs and queues locked more than four hours ago. Four hours is long
  enough that no live Node worker still holds such a job, so the rule is safe for rows we do not own.
* The dead-worker sweeper (:mod:`backfill.core.upkeep.sweeper`), the pruning of kept job outcomes
  (:mod:`backfill.core.upkeep.result_pruner`), the cron scheduler
  (:mod:`backfill.core.upkeep.cron`) and the loop monitor (:mod:`backfill.core.run.loop_monitor`),
  assembled by :func:`upkeep_tasks`. The periodic ones share the shape of
  :mod:`backfill.core.upkeep.periodic`.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import asyncpg

from backfill.core.events import Events
from backfill.core.hooks import Hooks
from backfill.core.run.loop_monitor import LoopMonitor
from backfill.core.run.options import WorkerOptions
from backfill.core.run.queries import WorkerQueries
from backfill.core.upkeep.cron import CronScheduler
from backfill.core.upkeep.crontab import CronItem
from backfill.core.upkeep.periodic import Interval, PeriodicService
from backfill.core.upkeep.result_pruner import prune_results_periodically
from backfill.core.upkeep.sweeper import sweep_periodically

logger = logging.getLogger("backfill.maintenance")


async def release_stale_locks_periodically(
    pool: asyncpg.Pool[Any], statement: str, interval: tuple[float, float]
) -> None:
    """Run ``statement`` (``WorkerQueries.release_stale_locks``) every ``interval`` seconds, until cancelled."""

    async def release() -> asyncpg.Record | None:
        async with pool.acquire() as connection:
            return await connection.fetchrow(statement)

    def report(row: asyncpg.Record | None) -> None:
        if row is not None and (row["jobs"] or row["queues"]):
            logger.warning(
                "released %s job lock(s) and %s queue lock(s) older than 4 hours", row["jobs"], row["queues"]
            )

    service = PeriodicService(
        name="stale-locks",
        what="releasing stale locks",
        run_once=release,
        interval=Interval.between(*interval),
        logger=logger,
        on_ran=report,
    )
    await service.run()


def upkeep_tasks(
    pool: asyncpg.Pool[Any],
    options: WorkerOptions,
    queries: WorkerQueries,
    *,
    events: Events,
    worker_id: str,
    hooks: Hooks,
    cron_items: Sequence[CronItem],
    once: bool,
) -> list[tuple[str, Coroutine[Any, Any, None]]]:
    """The named side tasks a worker supervises besides its completer, listener and heartbeat.

    ``run_once`` gets only the loop monitor: it is short-lived, and sweeping or scheduling cron belongs to the
    long-running workers. So does a worker with ``options.upkeep`` off (a second lane of the same process).
    """
    tasks: list[tuple[str, Coroutine[Any, Any, None]]] = []
    if options.loop_block_threshold is not None:
        monitor = LoopMonitor(options.loop_block_threshold, events=events, worker_id=worker_id)
        tasks.append(("loop-monitor", monitor.run()))
    if once or not options.upkeep:
        return tasks
    stale_locks = release_stale_locks_periodically(pool, queries.release_stale_locks, options.stale_lock_check_interval)
    tasks.append(("stale-locks", stale_locks))
    dead_workers = sweep_periodically(
        pool,
        options.schema_name,
        interval=options.sweep_interval,
        max_recoveries=options.max_recoveries,
        events=events,
        worker_id=worker_id,
    )
    tasks.append(("sweeper", dead_workers))
    tasks.append(("result-pruner", prune_results_periodically(pool, options.schema_name)))
    if cron_items:
        cron = CronScheduler(
            pool,
            options.schema_name,
            cron_items,
            events=events,
            worker_id=worker_id,
            transform=hooks.transform if hooks.before_schedule else None,
        )
        tasks.append(("cron", cron.run()))
    return tasks
