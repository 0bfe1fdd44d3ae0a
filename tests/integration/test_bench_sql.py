"""bench/'s own SQL against a real database: the backlog it inserts without a library, the PostgreSQL-ceiling
driver that drains it, and how the idle-cost phase finds a worker's backends."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backfill.core import TaskRegistry, Worker, WorkerOptions
from backfill.core.schema import DEFAULT_SCHEMA
from bench import cpu
from bench.database import BenchDatabase, with_application_name
from bench.drivers.postgres_driver import PostgresDriver
from bench.systems import make_system
from tests.support.waiting import wait_for, wait_for_event

WAIT = 30.0


async def _runnable(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {DEFAULT_SCHEMA}._private_jobs where run_at <= now()"))


async def test_a_backlog_inserted_with_sql_is_made_of_jobs_the_core_runs(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    db = BenchDatabase(conn)
    system = make_system("backfill", DEFAULT_SCHEMA)
    await db.insert_backlog(system, 50)
    await db.insert_backlog(system, 20, due_in_seconds=3600)
    assert await db.count_pending(system) == 70
    ran: list[int] = []
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(payload: dict[str, Any]) -> None:
        ran.append(payload["n"])

    summary = await Worker(database_url, tasks=registry, options=WorkerOptions(concurrency=4)).run_once()
    assert summary.succeeded == 50 and sorted(ran) == list(range(1, 51))
    # The scheduled part waits for its hour, untouched.
    assert await db.count_pending(system) == 20
    assert await _runnable(conn) == 0


async def test_the_ceiling_driver_drains_the_runnable_jobs_and_nothing_else(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    db = BenchDatabase(conn)
    system = make_system("postgres", DEFAULT_SCHEMA)
    await db.insert_backlog(system, 2_345)  # more than a few claim batches, and not a multiple of one
    await db.insert_backlog(system, 10, due_in_seconds=3600)
    stop, started = asyncio.Event(), asyncio.Event()
    driver = PostgresDriver(database_url, DEFAULT_SCHEMA)
    working = asyncio.create_task(driver.work(24, lambda payload: None, stop, started.set))
    try:
        await wait_for_event(started, timeout=WAIT, message="the ceiling driver started")

        async def drained() -> bool:
            return await _runnable(conn) == 0

        await wait_for(drained, timeout=WAIT)
    finally:
        stop.set()
        await asyncio.wait_for(working, WAIT)
    left = await conn.fetch(f"select locked_at from {DEFAULT_SCHEMA}._private_jobs")
    assert len(left) == 10 and all(row["locked_at"] is None for row in left)


async def test_a_backend_is_found_by_its_application_name_and_its_cpu_is_readable(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    named = await asyncpg.connect(with_application_name(database_url, "bench-idle-test"))
    try:
        pid = int(await named.fetchval("select pg_backend_pid()"))
        assert await BenchDatabase(conn).backend_pids("bench-idle-test") == [pid]
        assert cpu.process_ticks(pid) is not None  # PostgreSQL runs on this machine, as the bench requires
    finally:
        await named.close()
