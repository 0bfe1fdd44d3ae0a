"""A worker runs async and sync handlers, with or without a context, and run_once drains and reports."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_count


async def test_sync_handler_runs_in_a_thread_while_the_loop_keeps_running_async_handlers(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    loop_thread = threading.current_thread()
    sync_started = threading.Event()
    async_done = threading.Event()
    threads: dict[str, threading.Thread] = {}
    registry = TaskRegistry()

    @registry.task("blocking_sync")
    def blocking_sync(payload: dict[str, Any]) -> None:
        threads["sync"] = threading.current_thread()
        sync_started.set()
        # Blocks its thread until the async job has run: if this handler held the event loop, the async
        # job could never run and this wait would time out, failing the job.
        if not async_done.wait(timeout=5):
            raise RuntimeError("the event loop was blocked while a sync handler ran")

    @registry.task("async_while_blocked")
    async def async_while_blocked(payload: dict[str, Any]) -> None:
        threads["async"] = threading.current_thread()
        deadline = time.monotonic() + 5
        while not sync_started.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError("the sync job never started")
            await asyncio.sleep(0.005)
        async_done.set()

    await add_job(pool, "blocking_sync")
    await add_job(pool, "async_while_blocked")
    summary = await Worker(database_url, tasks=registry, options=fast_options(concurrency=2)).run_once()

    assert (summary.succeeded, summary.failed) == (2, 0)
    assert threads["sync"] is not loop_thread
    assert threads["async"] is loop_thread


@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
async def test_one_and_two_argument_handlers_get_payload_and_context(
    database_url: str, pool: asyncpg.Pool[Any], is_async: bool
) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    registry = TaskRegistry()
    if is_async:

        async def one_async(payload: Any) -> None:
            seen["one"] = (payload,)

        async def two_async(payload: Any, ctx: JobContext) -> None:
            seen["two"] = (payload, ctx)

        registry.register("one", one_async)
        registry.register("two", two_async)
    else:

        def one_sync(payload: Any) -> None:
            seen["one"] = (payload,)

        def two_sync(payload: Any, ctx: JobContext) -> None:
            seen["two"] = (payload, ctx)

        registry.register("one", one_sync)
        registry.register("two", two_sync)

    await add_job(pool, "one", {"n": 1})
    two = await add_job(pool, "two", {"n": 2})
    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert summary.succeeded == 2
    assert seen["one"] == ({"n": 1},)
    payload, ctx = seen["two"]
    assert payload == {"n": 2}
    assert isinstance(ctx, JobContext)
    assert ctx.job.id == two.id


async def test_context_gives_job_attempt_logger_pool_and_add_job(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}
    registry = TaskRegistry()

    @registry.task("parent")
    async def parent(payload: dict[str, Any], ctx: JobContext) -> None:
        seen["job"] = ctx.job
        seen["attempt"] = ctx.attempt
        seen["pool"] = ctx.pool
        seen["from_pool"] = await ctx.pool.fetchval("select $1::int + 1", 41)
        ctx.logger.info("parent says hello")
        child = await ctx.add_job("child", {"from": ctx.job.id}, queue_name="children")
        assert child is not None  # None only when a before_schedule interceptor drops the job
        seen["child_id"] = child.id

    @registry.task("child")
    async def child(payload: dict[str, Any], ctx: JobContext) -> None:
        seen["child_payload"] = payload
        seen["child_queue"] = ctx.job.queue_name

    # One earlier failed attempt, so "attempt" is visibly the count including this one.
    job = await add_job(pool, "parent", {"x": 1}, priority=3)
    await conn.execute("update graphile_worker._private_jobs set attempts = 1 where id = $1", job.id)

    caplog.set_level(logging.INFO, logger="backfill.task")
    worker = Worker(pool, tasks=registry, options=fast_options())
    summary = await worker.run_once()

    assert summary.succeeded == 2  # run_once also ran the follow-up the handler enqueued
    assert seen["job"].id == job.id
    assert seen["job"].task_identifier == "parent"
    assert seen["job"].payload == {"x": 1}
    assert seen["job"].priority == 3
    assert seen["job"].locked_by == worker.worker_id
    assert seen["attempt"] == 2
    assert seen["pool"] is pool
    assert seen["from_pool"] == 42
    assert seen["child_payload"] == {"from": job.id}
    assert seen["child_queue"] == "children"
    records = [r for r in caplog.records if r.getMessage() == "parent says hello"]
    assert len(records) == 1
    assert records[0].__dict__["job_id"] == job.id
    assert records[0].__dict__["task"] == "parent"
    assert records[0].__dict__["attempt"] == 2
    assert await job_count(conn) == 0


async def test_run_once_returns_a_correct_summary_and_leaves_the_table_empty(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[int] = []
    registry = TaskRegistry()

    @registry.task("count")
    async def count(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    for n in range(25):
        await add_job(pool, "count", {"n": n}, queue_name="q" if n % 5 == 0 else None)
    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert sorted(ran) == list(range(25))
    assert (summary.succeeded, summary.failed, summary.permanently_failed) == (25, 0, 0)
    assert (summary.returned, summary.interrupted, summary.lost_leases) == (0, 0, 0)
    assert summary.processed == 25
    assert await job_count(conn) == 0
    locked_queues = "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
    assert await conn.fetchval(locked_queues) == 0
