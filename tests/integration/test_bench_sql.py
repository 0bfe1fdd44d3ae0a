"""bench/'s own SQL against a real database: the backlog it inserts without a library, the PostgreSQL-ceiling
driver that drains it, how the idle-cost phase finds a worker's backends, and a drain cut short."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from backfill.core import TaskRegistry, Worker, WorkerOptions
from backfill.core.schema import DEFAULT_SCHEMA
from bench import cpu, phases
from bench.database import BenchDatabase, with_application_name
from bench.drivers.postgres_driver import PostgresDriver
from bench.systems import System, make_system
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


# A worker that starts, never runs a job, and takes its time to exit after SIGTERM without a result: a peer
# stopped in the middle of a backlog.
_SLOW_TO_STOP = """
import json, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(2), sys.exit(0)))
print(json.dumps({"event": "ready", "at_ms": time.time() * 1000}), flush=True)
while True:
    time.sleep(0.1)
"""


@dataclass(frozen=True)
class _SlowToStop(System):
    def argv(self, command: str, dsn: str, **options: int | float) -> list[str]:
        return [sys.executable, "-c", _SLOW_TO_STOP]


async def test_a_drain_cut_short_keeps_its_rate_when_the_worker_is_slow_to_report(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = BenchDatabase(conn)
    graphile = make_system("backfill", DEFAULT_SCHEMA)
    system = _SlowToStop("slow", DEFAULT_SCHEMA, graphile.tables)
    await db.insert_backlog(system, 10)
    monkeypatch.setattr(phases, "STOP_TIMEOUT", 0.5)  # shorter than the worker's 2 s to stop
    settings = phases.Settings(database_url, 10, 10, 1, 5.0, 1, drain_limit=0.3)
    drained = await phases.drain(system, settings, db, jobs=10, limit=settings.drain_limit)
    assert not drained.complete
    assert drained.jobs == 0 and drained.cpu_seconds is None
