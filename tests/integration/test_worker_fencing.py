"""Fencing: once a running job's lock is taken away, the worker's result must not touch the row."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row, rows_locked_by, running
from tests.support.waiting import wait_for, wait_for_event


@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_a_result_for_a_job_whose_lock_was_taken_changes_nothing(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], outcome: str
) -> None:
    started = asyncio.Event()
    lock_taken = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("long")
    async def long(payload: dict[str, Any]) -> None:
        started.set()
        await lock_taken.wait()
        if outcome == "failure":
            raise RuntimeError("this error must not be recorded")

    job = await add_job(pool, "long", queue_name="fenced")
    worker = Worker(database_url, tasks=registry, options=fast_options())
    run = asyncio.create_task(worker.run_once())
    await wait_for_event(started, timeout=5, message="handler start")

    # As if the job had been rescued and claimed by someone else while our handler ran.
    await conn.execute(
        "update graphile_worker._private_jobs set locked_by = 'someone-else', locked_at = now() where id = $1",
        job.id,
    )
    await conn.execute("update graphile_worker._private_job_queues set locked_by = 'someone-else', locked_at = now()")
    stolen = await job_row(conn, job.id)
    lock_taken.set()
    summary = await asyncio.wait_for(run, 10)

    assert summary.lost_leases == 1
    assert await job_row(conn, job.id) == stolen  # still there, same attempts, last_error, run_at, lock
    assert stolen is not None
    assert stolen["locked_by"] == "someone-else"
    queue_owner = await conn.fetchval("select locked_by from graphile_worker._private_job_queues")
    assert queue_owner == "someone-else"
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_a_stale_attempt_does_not_touch_the_job_once_the_same_worker_claimed_it_again(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Graphile's 4-hour sweep (or force_unlock_workers) can release a job that is still running; the same
    # worker may then claim it again. The first attempt's late result must not unlock the second attempt's
    # job and queue, or a third run could start beside the second, breaking the serial queue.
    started = {1: asyncio.Event(), 2: asyncio.Event()}
    release = {1: asyncio.Event(), 2: asyncio.Event()}
    registry = TaskRegistry()

    @registry.task("long")
    async def long(payload: dict[str, Any], ctx: JobContext) -> None:
        started[ctx.attempt].set()
        await release[ctx.attempt].wait()
        if ctx.attempt == 1:
            raise RuntimeError("late failure of a released attempt")

    job = await add_job(pool, "long", queue_name="fenced")
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=2))
    async with running(worker) as run:
        await wait_for_event(started[1], timeout=5, message="attempt 1 start")
        await conn.execute(
            "update graphile_worker._private_jobs set locked_by = null, locked_at = null where id = $1", job.id
        )
        await conn.execute("update graphile_worker._private_job_queues set locked_by = null, locked_at = null")
        await wait_for_event(started[2], timeout=5, message="attempt 2 start (same worker claims it again)")

        release[1].set()
        row = await wait_for(
            lambda: _failure_written_or_lost(conn, job.id, caplog), timeout=5, message="attempt 1's result"
        )
        assert row["last_error"] is None, "a stale attempt's failure overwrote the running attempt's job"
        assert (row["locked_by"], row["attempts"]) == (worker.worker_id, 2)
        queue_owner = await conn.fetchval("select locked_by from graphile_worker._private_job_queues")
        assert queue_owner == worker.worker_id

        release[2].set()
        await wait_for(lambda: _deleted(conn, job.id), timeout=5, message="attempt 2 completes the job")
        worker.stop()
        summary = await asyncio.wait_for(run, 10)

    assert summary.lost_leases == 1
    assert await rows_locked_by(conn, worker.worker_id) == 0
    # Both attempts of the one job ran in this worker at once: its bookkeeping must not have mixed them up
    # (a runner that died on it is reported by asyncio when the task is collected).
    gc.collect()
    runner_deaths = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert runner_deaths == []


async def _failure_written_or_lost(
    conn: asyncpg.Connection[Any], job_id: int, caplog: pytest.LogCaptureFixture
) -> asyncpg.Record | None:
    """The job's row once attempt 1's failure was either written (a bug) or discarded as a lost lease."""
    row = await job_row(conn, job_id)
    assert row is not None
    discarded = any("lost the lease" in record.getMessage() for record in caplog.records)
    return row if discarded or row["last_error"] is not None else None


async def _deleted(conn: asyncpg.Connection[Any], job_id: int) -> bool:
    return await job_row(conn, job_id) is None


@pytest.mark.parametrize("superseded_by", ["add_job-replace", "remove_job"])
async def test_a_running_job_whose_key_was_superseded_is_still_completed(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], superseded_by: str
) -> None:
    # Graphile's add_job and remove_job set attempts = max_attempts on a running keyed job (and clear its
    # key) without touching the lock: the claim is still ours, so the result must still be written.
    started = asyncio.Event()
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("keyed")
    async def keyed(payload: dict[str, Any]) -> None:
        if payload.get("first"):
            started.set()
            await release.wait()

    job = await add_job(pool, "keyed", {"first": True}, job_key="k")
    worker = Worker(database_url, tasks=registry, options=fast_options(poll_interval=60.0))
    async with running(worker) as run:
        await wait_for_event(started, timeout=5, message="keyed job start")
        if superseded_by == "remove_job":
            await conn.execute("select graphile_worker.remove_job('k')")
        else:
            await add_job(pool, "keyed", {"first": False}, job_key="k")
        superseded = await job_row(conn, job.id)
        assert superseded is not None
        assert (superseded["key"], superseded["attempts"]) == (None, superseded["max_attempts"])
        release.set()
        await wait_for(lambda: _deleted(conn, job.id), timeout=5, message="the superseded job to be completed")
        worker.stop()
        summary = await asyncio.wait_for(run, 10)

    assert summary.lost_leases == 0
    assert await rows_locked_by(conn, worker.worker_id) == 0
