"""The sweeper: rescues the jobs and named queues of backfill workers that died without releasing them.

A backfill worker keeps its row in ``backfill_workers`` fresh (:mod:`backfill.core.run.heartbeat`). Once a row is
older than the ``dead_after`` its worker declared, any worker's sweeper, in one transaction:

* marks the dead workers' rows ``declared_dead_at`` (kept an hour, then deleted: until then every sweep
  also releases whatever such a worker took after it was declared dead, in the seconds before its next
  heartbeat told it);
* releases their jobs at once, giving back the attempt the dead claim took (the job did not fail, its worker
  died), unless the job has now been rescued from more than ``max_recoveries`` dead workers: a job that kills
  every worker that runs it is a probable poison pill, and is failed permanently instead;
* unlocks the named queues they held;
* forgets recovery counts of jobs that no longer exist.

Telling the culprit from its company. A worker that dies holds every job it was running, and only one of them
may be the poison. Counting a death against all of them would, after enough deaths, fail innocent jobs that
happened to run beside the poison each time (a long job, a small deployment). So a job found in a second dead
worker (``isolate_after`` recoveries) is released with the flag ``backfill:suspect``, and a backfill worker
runs a suspect alone, with nothing else claimed or running. From then on a death while running a suspect is
evidence against that job only; an innocent suspect finishes (or fails normally, which clears the flag) and is
never counted again, while the poison keeps dying alone until it passes ``max_recoveries``.

Locks held by owners that never registered (Node workers, ``worker-…``, or a backfill worker older than the
registry) are not touched: nothing says whether they are alive, so they are left to Graphile's four-hour rule
(:mod:`backfill.core.upkeep.maintenance`).

The races, and why each is safe:

* A worker that was slow, not dead (a stalled loop, a partition), is rescued all the same. Its late results
  are fenced by ``locked_by`` *and* ``locked_at`` (:mod:`backfill.core.run.queries`); the release sets
  ``locked_at`` to null, so even if the same worker id claims the job again, the old claim's write matches
  nothing. Its heartbeat then finds its row gone and registers again.
* A dead worker's job being completed (or failed) concurrently by that not-quite-dead worker: both sides take
  the job's row lock. If the completion commits first, the row is gone (or no longer ours) when our
  ``for update`` re-reads it, and we skip it. If we lock first, the completion waits and then fails its fence.
  Both sides lock the job before its queue, so they cannot deadlock on that pair; two jobs locked in
  opposite orders can deadlock, and PostgreSQL then aborts one side: the sweeper retries at its next
  interval, the completer retries and finds its lease lost.
* A heartbeat racing the sweep: the dead rows are found by ``update ... where last_heartbeat_at + dead_after <
  now()``, which locks each row and re-checks the condition if a heartbeat committed meanwhile, so a worker
  that beat in time is not declared dead. A heartbeat that waits for our update then finds the row declared
  dead, which its ``where declared_dead_at is null`` refuses: the worker learns it and registers again.
* Two sweepers: one transaction-level advisory lock per schema, taken with ``try``; the loser reports
  ``skipped`` and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import asyncpg

from backfill.core.db import ConnectionSource, Executor, connection_from
from backfill.core.errors import ConfigurationError
from backfill.core.events import Events
from backfill.core.jobs import SUSPECT_FLAG
from backfill.core.migrations.own import ADVISORY_LOCK_CLASS
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.core.upkeep.periodic import Interval, PeriodicService

logger = logging.getLogger("backfill.sweeper")

# Enough to name what happened in a log line without flooding it when a big worker dies.
_LOGGED_ITEMS = 20
# A job found in this many dead workers is run alone from then on (see "Telling the culprit" above). Two, not
# one: a single death is usually not the job's doing (a deploy, an OOM elsewhere, a node going away), and
# isolating every job of every dead worker would serialise the whole backlog after each crash.
ISOLATE_AFTER_RECOVERIES = 2
# How long the row of a worker declared dead is kept: every sweep meanwhile releases whatever it still holds.
_FORGET_DEAD_WORKERS_AFTER = "1 hour"
# Orphaned recovery counts forgotten per sweep: bounds the sweep's work after a mass deletion of jobs; the
# rest go at the next sweeps.
_GC_BATCH = 1000


@dataclass(frozen=True)
class SweepReport:
    """What one sweep found and did (with ``dry_run``: would have done)."""

    dead_workers: list[str]
    released_jobs: list[int]
    poisoned_jobs: list[int]
    released_queues: list[str]
    dry_run: bool
    skipped: bool = False  # another sweeper held the lock: nothing was looked at

    @property
    def recovered_anything(self) -> bool:
        return bool(self.dead_workers or self.released_jobs or self.poisoned_jobs or self.released_queues)


class SweepSql(Statements, file=("backfill.core.sql", "sweep.sql")):
    """The steps of one sweep (see sweep.sql)."""

    literals = MappingProxyType(
        {
            "suspect_flag": SUSPECT_FLAG,
            "forget_dead_workers_after": _FORGET_DEAD_WORKERS_AFTER,
            "gc_batch": _GC_BATCH,
        }
    )
    try_lock: str
    declare_dead: str
    forget_dead_workers: str
    lock_jobs: str
    count_recoveries: str
    release_jobs: str
    poison_jobs: str
    unlock_queues: str
    forget_recoveries: str
    forget_errors: str


def poison_message(recoveries: int, last_worker_id: str, max_recoveries: int) -> str:
    """The ``last_error`` of a job failed as a poison pill."""
    return (
        f"backfill: the job was running in {recoveries} workers that died (last: {last_worker_id}), more than "
        f"max_recoveries={max_recoveries}; failed permanently as a probable poison pill"
    )


async def sweep(
    executor: ConnectionSource, schema: SchemaName, *, max_recoveries: int = 3, dry_run: bool = False
) -> SweepReport:
    """Rescue what dead backfill workers held, in one transaction; ``dry_run`` reports it and rolls back.

    On a connection already inside a transaction this runs in a savepoint, and the sweep lock is held until
    the caller's transaction ends.
    """
    if max_recoveries < 0:
        raise ConfigurationError(f"max_recoveries must be zero or more, got {max_recoveries}")
    statements = SweepSql.for_schema(schema)
    async with connection_from(executor) as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            report = await _sweep_in_transaction(connection, schema, statements, max_recoveries, dry_run)
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run or report.skipped:
            await transaction.rollback()
        else:
            await transaction.commit()
    if report.recovered_anything:
        _log(report, max_recoveries)
    return report


async def _sweep_in_transaction(
    connection: Executor, schema: SchemaName, statements: SweepSql, max_recoveries: int, dry_run: bool
) -> SweepReport:
    if not await connection.fetchval(statements.try_lock, ADVISORY_LOCK_CLASS, schema.name):
        return SweepReport([], [], [], [], dry_run=dry_run, skipped=True)

    stale = await connection.fetch(statements.declare_dead)
    dead = sorted(row["worker_id"] for row in stale)
    released: list[int] = []
    poisoned: list[int] = []
    queues: list[str] = []
    rows: list[Any] = []
    if dead:
        rows = await connection.fetch(statements.lock_jobs, dead)
        if rows:
            counted = await connection.fetch(
                statements.count_recoveries, [row["id"] for row in rows], [row["locked_by"] for row in rows]
            )
            over = [row for row in counted if row["recoveries"] > max_recoveries]
            over_ids = {row["job_id"] for row in over}
            released = sorted(row["id"] for row in rows if row["id"] not in over_ids)
            poisoned = sorted(over_ids)
            if released:
                recoveries = {row["job_id"]: row["recoveries"] for row in counted}
                isolate_after = min(ISOLATE_AFTER_RECOVERIES, max_recoveries)
                suspects = [recoveries[job_id] >= isolate_after for job_id in released]
                await connection.execute(statements.release_jobs, released, suspects)
            if over:
                await connection.execute(
                    statements.poison_jobs,
                    [row["job_id"] for row in over],
                    [poison_message(row["recoveries"], row["last_worker_id"], max_recoveries) for row in over],
                )
        # After the jobs: complete/fail lock a job before its queue, and so do we.
        queues = sorted(row["queue_name"] for row in await connection.fetch(statements.unlock_queues, dead))
    await connection.execute(statements.forget_recoveries)
    await connection.execute(statements.forget_errors)
    await connection.execute(statements.forget_dead_workers)
    # Report the workers declared dead now, and earlier ones only when they had taken something since.
    held = {row["locked_by"] for row in rows}
    reported = sorted(row["worker_id"] for row in stale if row["newly"] or row["worker_id"] in held)
    return SweepReport(reported, released, poisoned, queues, dry_run=dry_run)


def _preview(items: Sequence[object]) -> str:
    shown = ", ".join(str(item) for item in items[:_LOGGED_ITEMS])
    hidden = len(items) - _LOGGED_ITEMS
    return f"[{shown}{f' … and {hidden} more' if hidden > 0 else ''}]"


def _log(report: SweepReport, max_recoveries: int) -> None:
    logger.warning(
        "%sworker(s) %s missed their heartbeat deadline and were declared dead: released %s job(s) %s, "
        "failed %s job(s) %s as probable poison pills (rescued more than %s times), unlocked %s queue(s) %s",
        "dry run, nothing changed: " if report.dry_run else "",
        _preview(report.dead_workers),
        len(report.released_jobs),
        _preview(report.released_jobs),
        len(report.poisoned_jobs),
        _preview(report.poisoned_jobs),
        max_recoveries,
        len(report.released_queues),
        _preview(report.released_queues),
    )


async def sweep_periodically(
    pool: asyncpg.Pool[Any],
    schema: SchemaName,
    *,
    interval: tuple[float, float],
    max_recoveries: int,
    events: Events,
    worker_id: str,
) -> None:
    """Sweep every ``interval`` seconds (a uniform draw between the two bounds) until cancelled.

    The jitter keeps workers started together from sweeping together (only one would act anyway, the others
    would just skip). A failed sweep is logged and tried again at the next interval; this never returns.
    """

    def recovered(report: SweepReport) -> None:
        if report.recovered_anything:
            events.emit(
                "sweep:recovered",
                worker_id=worker_id,
                dead_workers=report.dead_workers,
                released_jobs=report.released_jobs,
                poisoned_jobs=report.poisoned_jobs,
                released_queues=report.released_queues,
            )

    service = PeriodicService(
        name="sweeper",
        what="sweeping dead workers",
        run_once=partial(sweep, pool, schema, max_recoveries=max_recoveries),
        interval=Interval.between(*interval),
        logger=logger,
        on_ran=recovered,
    )
    await service.run()
