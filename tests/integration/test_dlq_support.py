"""What the dead-letter tests share (no tests here): a pool with the dlq line installed, and a real core
worker whose failures reach a mover.

Failed attempts are retried at once (a retry planner returning delay 0) instead of after Graphile's backoff,
so a job uses up three attempts in one ``run_once`` through the worker's real failure path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from backfill.core.errors import PermanentFailure
from backfill.core.hooks import Hooks, RetryDecision
from backfill.core.jobs import Job
from backfill.core.migrations.own import migrate_own
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.dlq import DeadLetterEntry, DeadLetterMover, MovedJob, migrate_dlq
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"
DLQ = "graphile_worker.backfill_dlq"
ERRORS = "graphile_worker.backfill_job_errors"


async def installed(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    """``pool``, on a database with backfill's core and dlq lines installed (each test module's ``dlq_pool``)."""
    await migrate_own(pool, SCHEMA)
    await migrate_dlq(pool, SCHEMA)
    return pool


def registry() -> TaskRegistry:
    """``explode`` fails every attempt (naming it); ``fatal`` fails permanently; ``ok`` succeeds; ``flaky``
    fails while ``payload["fail_until"]`` is above the attempt number."""
    tasks = TaskRegistry()

    @tasks.task("explode")
    async def explode(payload: dict[str, Any], ctx: Any) -> None:
        raise RuntimeError(f"boom on attempt {ctx.attempt}")

    @tasks.task("fatal")
    async def fatal(payload: dict[str, Any]) -> None:
        raise PermanentFailure("bad input, never retry")

    @tasks.task("ok")
    async def ok(payload: dict[str, Any]) -> None:
        return None

    @tasks.task("flaky")
    async def flaky(payload: dict[str, Any], ctx: Any) -> None:
        if ctx.attempt <= int(payload.get("fail_until", 0)):
            raise RuntimeError(f"flaky attempt {ctx.attempt}")

    return tasks


async def run_worker(database_url: str, mover: DeadLetterMover) -> RunSummary:
    """Run every runnable job once with a real worker whose ``results:written`` reaches ``mover``, then wait
    until the mover has written what the events asked for."""
    hooks = Hooks(retry_planner=lambda job, error: RetryDecision(delay=0))
    worker = Worker(
        database_url, tasks=registry(), options=WorkerOptions(concurrency=1, poll_interval=0.05), hooks=hooks
    )
    mover.attach(worker.events)  # before the worker starts: it reports results only when someone listens then
    try:
        summary = await worker.run_once()
    finally:
        mover.detach()
    await mover.flushed()
    return summary


class MovedLog:
    """An ``on_moved`` callback that keeps what it was given."""

    def __init__(self) -> None:
        self.moved: list[MovedJob] = []

    def __call__(self, moved: Sequence[MovedJob]) -> None:
        self.moved.extend(moved)


async def entries(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any]) -> list[DeadLetterEntry]:
    rows = await conn.fetch(
        f"select *, payload::text as payload, flags::text as flags, errors::text as errors from {DLQ} order by id"
    )
    return [DeadLetterEntry.from_record(row) for row in rows]


async def job_exists(conn: asyncpg.Connection[Any] | asyncpg.Pool[Any], job_id: int) -> bool:
    return bool(await conn.fetchval(f"select exists (select 1 from {JOBS} where id = $1)", job_id))


_ADD_JOB_TYPES = {
    "queue_name": "text",
    "run_at": "timestamptz",
    "max_attempts": "int",
    "job_key": "text",
    "priority": "int",
    "flags": "text[]",
}


async def add(pool: asyncpg.Pool[Any], task: str, payload: str = "{}", **options: Any) -> int:
    """Graphile's add_job from SQL (as any client would, Node included); the job id."""
    names = ", ".join(
        f"{name} => ${position}::{_ADD_JOB_TYPES[name]}" for position, name in enumerate(options, start=3)
    )
    sql = f"select id from graphile_worker.add_job($1::text, $2::json{', ' + names if names else ''})"
    return int(await pool.fetchval(sql, task, payload, *options.values()))


async def wait_for_entries(
    pool: asyncpg.Pool[Any], count: int, *, where: Callable[[DeadLetterEntry], bool] = lambda entry: True
) -> list[DeadLetterEntry]:
    async def enough() -> list[DeadLetterEntry] | None:
        found = [entry for entry in await entries(pool) if where(entry)]
        return found if len(found) >= count else None

    return await wait_for(enough, message=f"{count} dead-letter entries")


def job_ids(moved: Sequence[MovedJob] | Sequence[Job]) -> list[int]:
    return sorted(item.job_id if isinstance(item, MovedJob) else item.id for item in moved)


async def make_dead(
    pool: asyncpg.Pool[Any],
    task: str,
    errors: Sequence[str] = ("boom",),
    *,
    payload: str = "{}",
    permanent: bool = False,
    exception_type: str | None = None,
    traceback: str | None = None,
    **options: Any,
) -> int:
    """A job that failed every attempt as a backfill worker records it (history rows, then the row), left for
    the mover; the job id. ``permanent``: the last failure said so; ``exception_type`` and ``traceback``:
    every attempt's."""
    job_id = await add(pool, task, payload, max_attempts=len(errors), **options)
    for attempt, error in enumerate(errors, start=1):
        last = attempt == len(errors)
        await pool.execute(
            f"""
            with failed as (
              update {JOBS} set attempts = $2::int, last_error = $3::text where id = $1::bigint returning id
            )
            insert into {ERRORS} (job_id, attempt, error, permanent, failed_at, exception_type, traceback)
            select id, $2::int, $3::text, $4::boolean, clock_timestamp(), $5::text, $6::text from failed
            """,
            job_id,
            attempt,
            error,
            permanent and last,
            exception_type,
            traceback,
        )
    return job_id
