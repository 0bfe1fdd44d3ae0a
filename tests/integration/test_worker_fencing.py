"""Fencing: once a running job's lock is taken away, the worker's result must not touch the row."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.tasks import TaskRegistry
from backfill.core.worker import Worker
from tests.integration.worker_support.helpers import fast_options, job_row, rows_locked_by
from tests.support.waiting import wait_for_event


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
