"""A failed attempt: last_error, attempts and Graphile's exponential backoff, locks released; permanent failure."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import PermanentFailure
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row

# The fail statement computes run_at from its own now(); the test brackets it with clock readings taken
# before and after the run, so only clock resolution and float rounding need slack.
SLACK = timedelta(milliseconds=5)


def failing_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("explode")
    async def explode(payload: dict[str, Any]) -> None:
        raise RuntimeError(f"boom on {payload['tag']}")

    return registry


async def clock(conn: asyncpg.Connection[Any]) -> datetime:
    value: datetime = await conn.fetchval("select clock_timestamp()")
    return value


@pytest.mark.parametrize(
    ("attempts_before", "backoff_exponent"),
    [(0, 1), (1, 2), (14, 10)],
    ids=["first-attempt", "second-attempt", "capped-at-10"],
)
async def test_failure_records_error_and_backs_off_exponentially(
    database_url: str,
    pool: asyncpg.Pool[Any],
    conn: asyncpg.Connection[Any],
    attempts_before: int,
    backoff_exponent: int,
) -> None:
    job = await add_job(pool, "explode", {"tag": "x"}, queue_name="serial", max_attempts=25)
    await conn.execute("update graphile_worker._private_jobs set attempts = $2 where id = $1", job.id, attempts_before)

    before = await clock(conn)
    worker = Worker(database_url, tasks=failing_registry(), options=fast_options())
    summary = await worker.run_once()
    after = await clock(conn)

    assert (summary.failed, summary.permanently_failed, summary.succeeded) == (1, 0, 0)
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"] == "RuntimeError: boom on x"
    assert row["attempts"] == attempts_before + 1
    backoff = timedelta(seconds=math.exp(backoff_exponent))
    assert before + backoff - SLACK <= row["run_at"] <= after + backoff + SLACK
    assert (row["locked_by"], row["locked_at"]) == (None, None)
    queue = await conn.fetchrow("select locked_by, locked_at from graphile_worker._private_job_queues")
    assert queue is not None
    assert (queue["locked_by"], queue["locked_at"]) == (None, None)


async def test_backoff_counts_from_run_at_when_it_is_later_than_now(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # greatest(now(), run_at): the handler pushes its own run_at into the future before failing.
    pushed: list[datetime] = []
    registry = TaskRegistry()

    @registry.task("postpone_then_fail")
    async def postpone_then_fail(payload: dict[str, Any], ctx: JobContext) -> None:
        pushed.append(
            await ctx.pool.fetchval(
                "update graphile_worker._private_jobs set run_at = now() + interval '1 hour'"
                " where id = $1 returning run_at",
                ctx.job.id,
            )
        )
        raise RuntimeError("failed after postponing")

    job = await add_job(pool, "postpone_then_fail")
    await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    row = await job_row(conn, job.id)
    assert row is not None
    assert abs(row["run_at"] - (pushed[0] + timedelta(seconds=math.exp(1)))) <= SLACK


async def test_permanent_failure_uses_up_every_attempt(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    calls: list[int] = []
    registry = TaskRegistry()

    @registry.task("hopeless")
    async def hopeless(payload: dict[str, Any]) -> None:
        calls.append(1)
        raise PermanentFailure("the account no longer exists")

    job = await add_job(pool, "hopeless", max_attempts=10)
    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert (summary.failed, summary.permanently_failed) == (1, 1)
    row = await job_row(conn, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"]) == (10, 10)
    assert row["last_error"] == "the account no longer exists"
    assert row["locked_by"] is None
    # Due again by run_at, yet never fetched: only is_available keeps it out.
    await conn.execute("update graphile_worker._private_jobs set run_at = now() - interval '1 minute'")
    again = await Worker(database_url, tasks=registry, options=fast_options()).run_once()
    assert again.processed == 0
    assert calls == [1]


async def test_failure_on_the_last_attempt_is_permanent_and_never_fetched_again(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "explode", {"tag": "last"}, max_attempts=3)
    await conn.execute("update graphile_worker._private_jobs set attempts = 2 where id = $1", job.id)

    summary = await Worker(database_url, tasks=failing_registry(), options=fast_options()).run_once()

    assert (summary.failed, summary.permanently_failed) == (1, 1)
    row = await job_row(conn, job.id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"], row["last_error"]) == (3, 3, "RuntimeError: boom on last")
    assert row["locked_by"] is None
    await conn.execute("update graphile_worker._private_jobs set run_at = now() - interval '1 minute'")
    before = await job_row(conn, job.id)
    again = await Worker(database_url, tasks=failing_registry(), options=fast_options()).run_once()
    assert again.processed == 0
    assert await job_row(conn, job.id) == before
