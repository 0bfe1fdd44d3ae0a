"""Jobs run by priority (lower first), then run_at; jobs scheduled for later wait until they are due."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row, running
from tests.support.waiting import wait_for_event


async def test_concurrency_one_runs_by_priority_then_run_at(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    order: list[str] = []
    registry = TaskRegistry()

    @registry.task("record")
    async def record(payload: dict[str, str]) -> None:
        order.append(payload["name"])

    now = datetime.now(UTC)
    # (name, priority, minutes ago); enqueued in an order that matches neither key.
    jobs = [
        ("p5-old", 5, 50),
        ("p0-new", 0, 1),
        ("p-3", -3, 2),
        ("p0-old", 0, 30),
        ("p10", 10, 60),
        ("p0-mid", 0, 10),
        ("p5-new", 5, 5),
    ]
    for name, priority, minutes_ago in jobs:
        await add_job(pool, "record", {"name": name}, priority=priority, run_at=now - timedelta(minutes=minutes_ago))

    summary = await Worker(database_url, tasks=registry, options=fast_options(concurrency=1)).run_once()

    assert summary.succeeded == len(jobs)
    assert order == ["p-3", "p0-old", "p0-mid", "p0-new", "p5-old", "p5-new", "p10"]


async def test_run_once_leaves_a_future_job_untouched(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[str] = []
    registry = TaskRegistry()

    @registry.task("record")
    async def record(payload: dict[str, str]) -> None:
        ran.append(payload["name"])

    later = await add_job(pool, "record", {"name": "later"}, run_at=datetime.now(UTC) + timedelta(hours=1))
    await add_job(pool, "record", {"name": "now"})
    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert ran == ["now"]
    assert summary.processed == 1
    row = await job_row(conn, later.id)
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["run_at"]) == (0, None, later.run_at)


async def test_running_worker_runs_a_future_job_once_it_is_due(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started_at: list[datetime] = []
    done = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("due")
    async def due(payload: dict[str, Any]) -> None:
        started_at.append(await conn.fetchval("select clock_timestamp()"))
        done.set()

    run_at = await conn.fetchval("select clock_timestamp() + interval '1 second'")
    job = await add_job(pool, "due", run_at=run_at)
    worker = Worker(database_url, tasks=registry, options=fast_options(poll_interval=0.1))
    async with running(worker):
        await wait_for_event(done, timeout=5, message="the future job")

    assert len(started_at) == 1
    assert started_at[0] >= job.run_at
    assert await job_row(conn, job.id) is None
