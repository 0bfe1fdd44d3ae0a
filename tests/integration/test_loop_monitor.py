"""The loop monitor: an async handler that blocks the event loop is reported (loop:blocked, with the stack that
blocked it); with the monitor off, nothing is reported."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.events import Event, Events
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row, running
from tests.support.waiting import wait_for, wait_for_event

BLOCK_SECONDS = 0.6


def blocking_registry(after: asyncio.Event) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("blocker")
    async def handler_that_blocks_the_loop(payload: dict[str, Any]) -> None:
        time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 - the bug this watchdog exists to report

    @registry.task("after")
    async def after_job(payload: dict[str, Any]) -> None:
        after.set()

    return registry


async def run_blocker_then_one_more_job(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], threshold: float | None
) -> list[Event]:
    """Run a blocking job, then one more: a loop:blocked event is delivered as soon as the loop runs again,
    so by the time the next job has run it has been emitted, if it ever will be."""
    events = Events()
    blocked: list[Event] = []
    events.on("loop:blocked", blocked.append)
    after = asyncio.Event()
    worker = Worker(
        database_url,
        tasks=blocking_registry(after),
        options=fast_options(concurrency=1, loop_block_threshold=threshold),
        events=events,
    )
    async with running(worker):
        job = await add_job(pool, "blocker")
        await wait_for(lambda: _deleted(conn, job.id), timeout=5, message="the blocking job completes")
        await add_job(pool, "after")
        await wait_for_event(after, timeout=5, message="one more job after the blocking one")
        monitor_threads = [t for t in threading.enumerate() if t.name == "backfill-loop-monitor"]
        assert bool(monitor_threads) == (threshold is not None)
    return blocked


async def test_a_blocking_async_handler_is_reported_with_its_stack(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="backfill.worker"):
        blocked = await run_blocker_then_one_more_job(database_url, pool, conn, threshold=0.2)

    assert len(blocked) == 1
    [event] = blocked
    assert 0.2 <= event["seconds"] <= BLOCK_SECONDS + 0.5
    assert "handler_that_blocks_the_loop" in event["stack"]
    assert event["worker_id"]
    assert event["culprit"] == "handler"
    logged = [r.getMessage() for r in caplog.records if "event loop has been blocked" in r.getMessage()]
    assert len(logged) == 1
    assert "handler_that_blocks_the_loop" in logged[0]
    assert "plain def handler" in logged[0]


async def test_with_the_monitor_off_nothing_is_reported(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    blocked = await run_blocker_then_one_more_job(database_url, pool, conn, threshold=None)

    assert blocked == []


async def _deleted(conn: asyncpg.Connection[Any], job_id: int) -> bool:
    return await job_row(conn, job_id) is None


async def test_a_stall_inside_backfill_is_not_blamed_on_user_code(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # A ~25 MB payload, built by PostgreSQL so that no Python code of this test encodes it: decoding it on the
    # claim path stalls the loop for a few hundred ms (one payload cannot be split; see backfill.core.run.claims)
    # with only backfill's frames on the loop's stack.
    job_id = await conn.fetchval(
        """select (graphile_worker.add_job('after', (
             select json_build_object('items', json_agg(json_build_object('id', g, 'note', repeat('x', 40))))
               from generate_series(1, 400000) as g
           ))).id"""
    )
    events = Events()
    blocked: list[Event] = []
    events.on("loop:blocked", blocked.append)
    after = asyncio.Event()
    worker = Worker(
        database_url,
        tasks=blocking_registry(after),
        options=fast_options(concurrency=1, loop_block_threshold=0.1),
        events=events,
    )
    with caplog.at_level(logging.ERROR, logger="backfill.worker"):
        async with running(worker):
            await wait_for_event(after, timeout=10, message="the job with the large payload runs")
            await wait_for(lambda: _deleted(conn, job_id), timeout=5, message="and completes")
            await wait_for(lambda: _true(bool(blocked)), timeout=5, message="the stall is reported")

    # The stall is sampled from another thread, so where it is caught varies with the machine's load: in the
    # decoding (core/jobs.py), in a garbage collection among the decoded objects (backfill's frames, or the
    # standard library's only: "unknown"), or in the loop reading the reply. Never in the handler: that is what
    # this test holds. Which code a frame belongs to is tested exactly in tests/unit/test_loop_monitor_culprit.py.
    assert not [event["stack"] for event in blocked if event["culprit"] == "handler"]
    ours = [event for event in blocked if event["culprit"] == "backfill"]
    assert all("backfill/core/" in event["stack"] for event in ours)
    logged = [r.getMessage() for r in caplog.records if "event loop has been blocked" in r.getMessage()]
    assert logged
    assert not any("plain def handler" in line for line in logged)


async def _true(value: bool) -> bool:
    return value
