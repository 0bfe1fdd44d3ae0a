"""Wake-ups: NOTIFY makes new jobs run without waiting for a poll, also after the LISTEN connection dies;
polling picks up rows inserted without any notification.

The LISTEN tests poll only every 30 s, so a job that runs within a few seconds was fetched because of a
notification (or the catch-up fetch after a reconnect), not because a poll came round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import (
    fast_options,
    listener_pids,
    rows_locked_by,
    running,
    wait_listening,
)
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_for, wait_for_event

SLOW_POLL = 30.0
PROMPTLY = 5.0


def signalling_registry(events: dict[str, asyncio.Event]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("signal")
    async def signal(payload: dict[str, str]) -> None:
        events[payload["name"]].set()

    return registry


async def test_a_job_added_after_start_runs_without_waiting_for_a_poll(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events = {"first": asyncio.Event(), "second": asyncio.Event()}
    worker = Worker(database_url, tasks=signalling_registry(events), options=fast_options(poll_interval=SLOW_POLL))
    async with running(worker):
        await wait_listening(conn)
        await add_job(pool, "signal", {"name": "first"})
        await wait_for_event(events["first"], timeout=PROMPTLY, message="job run on NOTIFY")
        # And again once the worker is idle, waiting on its 30 s poll.
        await add_job(pool, "signal", {"name": "second"})
        await wait_for_event(events["second"], timeout=PROMPTLY, message="second job run on NOTIFY")


@pytest.fixture
async def admin(postgres_server: PostgresServer) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection to the maintenance database: PostgreSQL will not close the current one to new connections."""
    connection = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("source", ["dsn", "pool"])
async def test_jobs_still_run_promptly_after_the_listen_connection_is_killed(
    database_url: str,
    pool: asyncpg.Pool[Any],
    conn: asyncpg.Connection[Any],
    admin: asyncpg.Connection[Any],
    source: str,
) -> None:
    # Given a DSN the listener opens its own connection; given a pool it holds one of the pool's.
    events = {"while-down": asyncio.Event(), "after": asyncio.Event()}
    database_source: str | asyncpg.Pool[Any] = database_url if source == "dsn" else pool
    options = fast_options(poll_interval=SLOW_POLL)
    worker = Worker(database_source, tasks=signalling_registry(events), options=options)
    database = await conn.fetchval("select current_database()")
    async with running(worker):
        old_pid = await wait_listening(conn)
        # Refusing new connections (superusers included) keeps the listener from coming back until we say
        # so. A pool-mode listener would simply take another idle pool connection, so there every pool
        # connection dies with it.
        await admin.execute(f'alter database "{database}" allow_connections false')
        try:
            victims = [old_pid] if source == "dsn" else await _other_backends(conn)
            for pid in victims:
                await conn.execute("select pg_terminate_backend($1)", pid)
            await wait_for(lambda: _all_gone(conn, victims), timeout=5, message="the killed backends to exit")
            # Committed while nobody listens (on our own connection: the pool cannot open new ones now): its
            # NOTIFY is lost, and only the catch-up fetch after the reconnect can run it before the next
            # poll, 30 s away.
            await add_job(conn, "signal", {"name": "while-down"})
            assert await listener_pids(conn) == []
        finally:
            await admin.execute(f'alter database "{database}" allow_connections true')
        await wait_for_event(events["while-down"], timeout=PROMPTLY, message="job enqueued while LISTEN was down")

        new_pid = await wait_listening(conn, exclude=(old_pid,))
        assert new_pid != old_pid
        await add_job(pool, "signal", {"name": "after"})
        await wait_for_event(events["after"], timeout=PROMPTLY, message="job enqueued after LISTEN came back")


async def test_a_raw_insert_without_notify_is_picked_up_by_polling(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    events = {"raw": asyncio.Event()}
    worker = Worker(database_url, tasks=signalling_registry(events), options=fast_options(poll_interval=0.1))
    async with running(worker):
        # After the listener's catch-up fetch, so only a poll can find the row.
        await wait_listening(conn)
        await conn.execute(
            """
            insert into graphile_worker._private_jobs (task_id, payload)
            select id, '{"name": "raw"}'::json from graphile_worker._private_tasks where identifier = 'signal'
            """
        )
        await wait_for_event(events["raw"], timeout=PROMPTLY, message="raw-inserted job")
    assert await conn.fetchval("select count(*) from graphile_worker._private_jobs") == 0


async def _other_backends(conn: asyncpg.Connection[Any]) -> list[int]:
    rows = await conn.fetch(
        "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
    )
    return [int(row["pid"]) for row in rows]


async def _all_gone(conn: asyncpg.Connection[Any], pids: list[int]) -> bool:
    return not set(pids) & set(await _other_backends(conn))


async def test_a_breaking_migration_notice_newer_than_ours_stops_the_worker(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events = {"after-21": asyncio.Event()}
    worker = Worker(database_url, tasks=signalling_registry(events), options=fast_options(poll_interval=SLOW_POLL))
    async with running(worker) as run:
        await wait_listening(conn)
        # A newer but non-breaking revision is tolerated: the worker keeps running jobs.
        await conn.execute("""select pg_notify('worker:migrate', '{"migrationNumber":21,"breaking":false}')""")
        await add_job(pool, "signal", {"name": "after-21"})
        await wait_for_event(events["after-21"], timeout=PROMPTLY, message="job after a non-breaking notice")
        assert not run.done()

        await conn.execute("""select pg_notify('worker:migrate', '{"migrationNumber":22,"breaking":true}')""")
        summary = await asyncio.wait_for(run, PROMPTLY)
    assert summary.succeeded == 1
    assert await rows_locked_by(conn, worker.worker_id) == 0
