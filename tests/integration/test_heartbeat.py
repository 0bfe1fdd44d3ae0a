"""The heartbeat: a worker's row in backfill_workers is written, kept fresh, re-created, and removed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import metadata
from typing import Any

import asyncpg
import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.events import Event, Events
from backfill.core.migrations.own import migrate_own
from backfill.core.run.heartbeat import Heartbeat
from backfill.core.schema import SchemaName
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
WORKERS = "graphile_worker.backfill_workers"


@pytest.fixture
async def own_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await migrate_own(pool, SCHEMA)
    return pool


def _heartbeat(pool: asyncpg.Pool[Any], events: Events | None = None, *, worker_id: str = "hb-1") -> Heartbeat:
    return Heartbeat(
        pool,
        SCHEMA,
        worker_id,
        interval=0.05,
        dead_after=30.0,
        concurrency=7,
        tasks=["send_email", "resize"],
        events=events or Events(),
    )


@contextlib.asynccontextmanager
async def _running(heartbeat: Heartbeat) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(heartbeat.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _age_the_heartbeat(conn: asyncpg.Connection[Any], worker_id: str) -> None:
    await conn.execute(
        f"update {WORKERS} set last_heartbeat_at = now() - interval '1 hour' where worker_id = $1", worker_id
    )


async def _is_fresh(conn: asyncpg.Connection[Any], worker_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"select last_heartbeat_at > now() - interval '1 minute' from {WORKERS} where worker_id = $1", worker_id
        )
    )


async def test_register_writes_the_row(own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    await _heartbeat(own_pool).register()

    row = await conn.fetchrow(f"select * from {WORKERS}")
    assert row is not None
    assert row["worker_id"] == "hb-1"
    assert row["hostname"] == socket.gethostname()
    assert row["pid"] == os.getpid()
    assert row["dead_after"] == timedelta(seconds=30)
    assert row["concurrency"] == 7
    assert row["tasks"] == ["send_email", "resize"]
    assert row["version"] == metadata.version("backfill")
    assert row["last_heartbeat_at"] >= row["started_at"]


async def test_registering_again_keeps_started_at(own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()
    await conn.execute(f"update {WORKERS} set started_at = now() - interval '1 day'")
    await _age_the_heartbeat(conn, "hb-1")

    await heartbeat.register()

    assert await conn.fetchval(f"select count(*) from {WORKERS}") == 1
    assert await conn.fetchval(f"select started_at < now() - interval '23 hours' from {WORKERS}")
    assert await _is_fresh(conn, "hb-1")


async def test_a_beat_refreshes_last_heartbeat_at(own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()
    await _age_the_heartbeat(conn, "hb-1")

    async with _running(heartbeat):
        await wait_for(lambda: _is_fresh(conn, "hb-1"), timeout=5, message="heartbeat refreshed")

    assert heartbeat.declared_dead_count == 0


async def test_a_worker_declared_dead_notices_reports_and_registers_again(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    seen: list[Event] = []
    events.on("heartbeat:declaredDead", seen.append)
    heartbeat = _heartbeat(own_pool, events)
    await heartbeat.register()

    async with _running(heartbeat):
        # What a sweeper does to a worker it declares dead (the row stays, marked, for later sweeps).
        await conn.execute(f"update {WORKERS} set declared_dead_at = now() where worker_id = 'hb-1'")
        await wait_for(
            lambda: conn.fetchval(f"select declared_dead_at is null from {WORKERS}"), timeout=5, message="cleared"
        )

    assert [event.data for event in seen] == [{"worker_id": "hb-1"}]
    assert heartbeat.declared_dead_count == 1
    assert any("lost leases" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    row = await conn.fetchrow(f"select * from {WORKERS}")
    assert row is not None
    assert (row["worker_id"], row["concurrency"], row["tasks"]) == ("hb-1", 7, ["send_email", "resize"])


async def test_a_row_deleted_outright_is_also_noticed_and_registered_again(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()
    await conn.execute(f"delete from {WORKERS} where worker_id = 'hb-1'")  # by hand, or an hour after death

    assert await heartbeat.beat() is False
    assert heartbeat.declared_dead_count == 1
    assert await conn.fetchval(f"select count(*) from {WORKERS} where declared_dead_at is null") == 1


async def test_the_heartbeat_survives_a_failing_database(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()
    caplog.set_level(logging.WARNING, logger="backfill.heartbeat")

    async with _running(heartbeat) as task:
        # Every beat now fails with "relation does not exist", a real error from the server.
        await conn.execute(f"alter table {WORKERS} rename to backfill_workers_away")

        async def failure_logged() -> bool:
            return any("heartbeat of worker hb-1 failed" in r.getMessage() for r in caplog.records)

        await wait_for(failure_logged, timeout=5, message="beat failure logged")
        await conn.execute("alter table graphile_worker.backfill_workers_away rename to backfill_workers")
        await _age_the_heartbeat(conn, "hb-1")
        await wait_for(lambda: _is_fresh(conn, "hb-1"), timeout=5, message="heartbeat refreshed after the outage")
        assert not task.done()

    assert heartbeat.declared_dead_count == 0


async def test_deregister_deletes_the_row(own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    other = _heartbeat(own_pool, worker_id="hb-2")
    await other.register()
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()

    await heartbeat.deregister()

    assert await conn.fetchval(f"select array_agg(worker_id) from {WORKERS}") == ["hb-2"]


async def test_deregister_logs_instead_of_raising(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat = _heartbeat(own_pool)
    await heartbeat.register()
    await conn.execute(f"alter table {WORKERS} rename to backfill_workers_away")

    await heartbeat.deregister()

    assert any("could not deregister worker hb-1" in r.getMessage() for r in caplog.records)


def test_dead_after_must_exceed_the_interval() -> None:
    with pytest.raises(ConfigurationError, match="dead_after"):
        Heartbeat(
            None,  # type: ignore[arg-type]  # never used: the options are refused first
            SCHEMA,
            "hb-1",
            interval=5.0,
            dead_after=5.0,
            concurrency=1,
            tasks=[],
            events=Events(),
        )
