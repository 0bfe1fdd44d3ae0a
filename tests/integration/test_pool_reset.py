"""The reset of a LazyPool's connections on release: skipped after an enqueue, which leaves no session state,
and asyncpg's full reset after anything else (a transaction left open, LISTEN, SET, a session advisory lock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core.db import LazyPool
from backfill.core.enqueue import EnqueueSql, add_job, add_jobs
from backfill.core.errors import DatabaseError
from backfill.core.jobs import JobSpec
from backfill.core.schema import SchemaName

ENQUEUE = EnqueueSql.for_schema(SchemaName("graphile_worker"))


@pytest.fixture
async def one_connection_pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A LazyPool of one connection, so that every acquire gets the connection the last release gave back."""
    lazy = LazyPool(database_url, max_size=1)
    try:
        yield await lazy.get()
    finally:
        await lazy.close()


async def _server_pid(pool: asyncpg.Pool[Any]) -> int:
    async with pool.acquire() as connection:
        return connection.get_server_pid()


async def _last_statement(observer: asyncpg.Connection[Any], pid: int) -> str:
    """What the backend ``pid`` ran last, as PostgreSQL reports it (the reset query, if the release sent one)."""
    query: str = await observer.fetchval("select query from pg_stat_activity where pid = $1", pid)
    return query


async def _ran_last(observer: asyncpg.Connection[Any], pid: int, statement: str) -> bool:
    """Whether ``statement`` is what the backend ``pid`` ran last (PostgreSQL keeps only its first kilobyte)."""
    last = await _last_statement(observer, pid)
    return len(last) > 100 and statement.startswith(last)


async def test_an_enqueue_on_a_lazy_pool_releases_its_connection_without_the_reset_query(
    one_connection_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    pid = await _server_pid(one_connection_pool)
    assert "RESET ALL" in await _last_statement(conn, pid)  # an ordinary release: asyncpg's reset query

    await add_job(one_connection_pool, "reset.single")
    assert await _ran_last(conn, pid, ENQUEUE.insert_job)

    await add_jobs(one_connection_pool, [JobSpec("reset.batch"), JobSpec("reset.batch")])
    assert await _ran_last(conn, pid, ENQUEUE.insert_jobs)

    await add_job(one_connection_pool, "reset.keyed", job_key="k")  # Graphile's add_job
    assert await _ran_last(conn, pid, ENQUEUE.add_job)


async def test_the_client_s_single_enqueue_sends_no_reset_query(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    async with BackfillClient(database_url, max_pool_size=1) as client:
        pid = await _server_pid(await client._get_pool())
        await client.enqueue("reset.client")  # the task's defaults are looked up first, then the enqueue
        assert await _ran_last(conn, pid, ENQUEUE.insert_job)
        await client.enqueue_many([Enqueue("reset.client"), Enqueue("reset.client")])
        assert await _ran_last(conn, pid, ENQUEUE.insert_jobs)


async def _leave_session_state(pool: asyncpg.Pool[Any]) -> None:
    """Use a connection the way an application might, then give it back without cleaning up."""
    async with pool.acquire() as connection:
        await connection.execute("listen reset_channel")
        await connection.execute("set application_name = 'left-behind'")
        await connection.execute("select pg_advisory_lock(4242)")
        await connection.execute("begin")  # an unmanaged transaction, still open at release
        await connection.execute("create temporary table reset_scratch (n int) on commit drop")


async def _assert_clean(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as connection:
        assert not connection.is_in_transaction()
        assert await connection.fetchval("select count(*) from pg_listening_channels()") == 0
        assert await connection.fetchval("select current_setting('application_name')") != "left-behind"
        held = await connection.fetchval(
            "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
        )
        assert held == 0
        assert await connection.fetchval("select to_regclass('pg_temp.reset_scratch')") is None


async def test_a_connection_left_listening_in_a_transaction_is_fully_reset(
    one_connection_pool: asyncpg.Pool[Any],
) -> None:
    await _leave_session_state(one_connection_pool)
    await _assert_clean(one_connection_pool)


async def test_the_mark_of_an_enqueue_covers_its_own_release_only(one_connection_pool: asyncpg.Pool[Any]) -> None:
    await add_job(one_connection_pool, "reset.single")  # marks the connection, whose release then skips the reset
    await _leave_session_state(one_connection_pool)  # the next user of the same connection leaves a mess
    await _assert_clean(one_connection_pool)


async def test_a_failed_enqueue_gets_the_full_reset(
    one_connection_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    pid = await _server_pid(one_connection_pool)
    with pytest.raises(DatabaseError):
        await add_job(one_connection_pool, "reset.single", schema="no_such_schema")
    assert "RESET ALL" in await _last_statement(conn, pid)
