"""Graceful shutdown: unstarted jobs go back with their attempt refunded, running ones finish or are
interrupted at the end of the grace period, and nothing stays locked by the worker."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job, add_jobs
from backfill.core.errors import DatabaseError
from backfill.core.jobs import JobSpec
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import (
    JOBS_TABLE,
    fast_options,
    job_count,
    job_row,
    listener_pids,
    rows_locked_by,
    running,
    wait_listening,
)
from tests.support.waiting import wait_for, wait_for_event

WARM_UP_JOBS = 20
HELD_JOBS = 6
CONCURRENCY = 2


async def test_stop_returns_unstarted_jobs_and_lets_running_ones_finish(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started: list[int] = []
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("warm_up")
    async def warm_up(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.02)

    @registry.task("hold")
    async def hold(payload: dict[str, int]) -> None:
        started.append(payload["n"])
        await release.wait()

    # The worker claims ahead of its free slots only once it has measured a throughput (lookahead times rate),
    # so a warm-up batch gives it one; a long lookahead keeps that estimate from shrinking to nothing.
    options = fast_options(concurrency=CONCURRENCY, poll_interval=30.0, lookahead=60.0, local_queue_size=8)
    worker = Worker(database_url, tasks=registry, options=options)
    async with running(worker) as run:
        await wait_listening(conn)
        await add_jobs(pool, [JobSpec("warm_up") for _ in range(WARM_UP_JOBS)])
        await wait_for(lambda: _no_jobs(conn), timeout=10, message="warm-up jobs done")

        # Priorities fix which jobs run (0 and 1) and which wait in the local queue (2 to 5); a named queue
        # each, so returning and completing must also unlock queues.
        held = await add_jobs(
            pool, [JobSpec("hold", {"n": n}, priority=n, queue_name=f"hold-{n}") for n in range(HELD_JOBS)]
        )
        by_priority = {job.priority: job.id for job in held}
        await wait_for(lambda: _count(started, CONCURRENCY), timeout=5, message="two held jobs running")
        await wait_for(
            lambda: _locked_count(conn, worker.worker_id, 2 * HELD_JOBS), timeout=5, message="six jobs, six queues"
        )

        worker.stop()
        unstarted = [by_priority[n] for n in range(CONCURRENCY, HELD_JOBS)]
        await wait_for(lambda: _all_returned(conn, unstarted), timeout=5, message="unstarted jobs returned")
        for n in range(CONCURRENCY):  # still running, still ours, while the grace period lasts
            row = await job_row(conn, by_priority[n])
            assert row is not None
            assert (row["locked_by"], row["attempts"]) == (worker.worker_id, 1)
        assert not run.done()

        release.set()
        summary = await asyncio.wait_for(run, 10)

    assert sorted(started) == [0, 1]
    assert summary.returned == HELD_JOBS - CONCURRENCY
    assert (summary.succeeded, summary.failed, summary.interrupted) == (WARM_UP_JOBS + CONCURRENCY, 0, 0)
    for n in range(CONCURRENCY):
        assert await job_row(conn, by_priority[n]) is None  # completed
    for job_id in unstarted:
        row = await job_row(conn, job_id)
        assert row is not None
        assert (row["attempts"], row["locked_by"], row["locked_at"], row["last_error"]) == (0, None, None, None)
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_a_job_outliving_the_grace_period_is_interrupted_and_released(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("stubborn")
    async def stubborn(payload: dict[str, Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await add_job(pool, "stubborn", queue_name="slow-lane")
    worker = Worker(database_url, tasks=registry, options=fast_options(shutdown_grace_period=0.2))
    async with running(worker) as run:
        await wait_for_event(started, timeout=5, message="handler start")
        worker.stop()
        summary = await asyncio.wait_for(run, 10)

    assert cancelled.is_set()
    assert (summary.interrupted, summary.succeeded) == (1, 0)
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"].startswith("Interrupted")
    assert row["attempts"] == 1  # the attempt counts, so a job that never fits cannot cycle forever
    assert (row["locked_by"], row["locked_at"]) == (None, None)
    queue = await conn.fetchrow("select locked_by, locked_at from graphile_worker._private_job_queues")
    assert queue is not None
    assert (queue["locked_by"], queue["locked_at"]) == (None, None)
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_a_second_stop_interrupts_running_jobs_without_waiting_for_the_grace_period(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("stubborn")
    async def stubborn(payload: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    job = await add_job(pool, "stubborn")
    worker = Worker(database_url, tasks=registry, options=fast_options(shutdown_grace_period=60.0))
    async with running(worker) as run:
        await wait_for_event(started, timeout=5, message="handler start")
        worker.stop()
        worker.stop()
        summary = await asyncio.wait_for(run, 5)  # far below the 60 s grace period

    assert summary.interrupted == 1
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"].startswith("Interrupted")
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_async_with_starts_and_stops_the_worker(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("once")
    async def once(payload: dict[str, Any]) -> None:
        ran.set()

    worker = Worker(database_url, tasks=registry, options=fast_options())
    async with worker as entered:
        assert entered is worker
        await add_job(pool, "once")
        await wait_for_event(ran, timeout=5, message="job run inside async with")
        assert await listener_pids(conn) != []

    assert worker.summary.succeeded == 1
    assert await job_count(conn) == 0
    assert await rows_locked_by(conn, worker.worker_id) == 0
    await wait_for(lambda: _no_listener(conn), timeout=5, message="listener connection closed")


async def test_async_with_raises_the_start_up_error(unused_tcp_port: int) -> None:
    registry = TaskRegistry()
    registry.register("noop", _noop)
    worker = Worker(f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/nowhere", tasks=registry)
    with pytest.raises(DatabaseError, match="cannot connect"):
        async with worker:
            pytest.fail("the body must not run when the worker cannot start")


async def _noop(payload: Any) -> None:
    return None


async def _no_jobs(conn: asyncpg.Connection[Any]) -> bool:
    return await job_count(conn) == 0


async def _no_listener(conn: asyncpg.Connection[Any]) -> bool:
    return await listener_pids(conn) == []


async def _count(items: list[int], expected: int) -> bool:
    return len(items) == expected


async def _locked_count(conn: asyncpg.Connection[Any], worker_id: str, expected: int) -> bool:
    return await rows_locked_by(conn, worker_id) == expected


async def _all_returned(conn: asyncpg.Connection[Any], job_ids: list[int]) -> bool:
    returned = await conn.fetchval(
        f"select count(*) from {JOBS_TABLE} where id = any($1::bigint[]) and locked_by is null and attempts = 0",
        job_ids,
    )
    return bool(returned == len(job_ids))
