"""Enqueueing inside the caller's transaction: rollback means the job never existed."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job, add_jobs
from backfill.core.jobs import JobSpec
from tests.support.waiting import listening

JOBS = "graphile_worker._private_jobs"


class _Rollback(Exception):
    """Raised to leave a transaction block the way application code does on error."""


async def _count(connection: asyncpg.Connection[Any] | asyncpg.Pool[Any], table: str = JOBS) -> int:
    return int(await connection.fetchval(f"select count(*) from {table}"))


async def test_rolled_back_add_job_leaves_no_job_and_no_notification(
    conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any], database_url: str
) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        try:
            async with conn.transaction():
                job = await add_job(conn, "welcome_email", {"user": 1}, queue_name="mail")
                assert await _count(conn) == 1  # it exists inside the transaction
                raise _Rollback
        except _Rollback:
            pass
        assert await notifications.flush() == []
    assert await _count(pool) == 0
    assert await pool.fetchval(f"select count(*) from {JOBS} where id = $1", job.id) == 0
    # The task and queue it registered went with it.
    assert await _count(pool, "graphile_worker._private_tasks") == 0
    assert await _count(pool, "graphile_worker._private_job_queues") == 0


async def test_rolled_back_add_jobs_leaves_nothing(
    conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any], database_url: str
) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        transaction = conn.transaction()
        await transaction.start()
        await add_jobs(conn, [JobSpec("t", {"n": n}) for n in range(5)])
        await transaction.rollback()
        assert await notifications.flush() == []
    assert await _count(pool) == 0


async def test_committed_job_is_invisible_and_unannounced_until_commit(
    conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any], database_url: str
) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        transaction = conn.transaction()
        await transaction.start()
        job = await add_job(conn, "t", {"n": 1})

        # Another session (a worker) sees neither the row nor a notification yet.
        assert await _count(pool) == 0
        assert await notifications.flush() == []

        await transaction.commit()
        payloads = await notifications.wait_for_count(1)
        assert await pool.fetchval(f"select id from {JOBS}") == job.id
        assert [json.loads(p)["count"] for p in payloads] == [1]
        assert await notifications.flush() == payloads


async def test_savepoint_rollback_discards_only_its_job(
    conn: asyncpg.Connection[Any], pool: asyncpg.Pool[Any], database_url: str
) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        async with conn.transaction():
            kept = await add_job(conn, "t", {"kept": True})
            try:
                async with conn.transaction():  # a savepoint
                    await add_job(conn, "t", {"kept": False})
                    raise _Rollback
            except _Rollback:
                pass
        payloads = await notifications.flush()
    assert await pool.fetchval(f"select array_agg(id) from {JOBS}") == [kept.id]
    assert [json.loads(p)["count"] for p in payloads] == [1]


async def test_add_job_takes_a_pool_connection_inside_a_transaction(pool: asyncpg.Pool[Any], database_url: str) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        async with pool.acquire() as connection:
            try:
                async with connection.transaction():
                    await add_job(connection, "t")
                    raise _Rollback
            except _Rollback:
                pass
        assert await notifications.flush() == []
    assert await _count(pool) == 0
