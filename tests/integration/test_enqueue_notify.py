"""add_job/add_jobs wake workers with one jobs:insert notification carrying the number of jobs."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job, add_jobs
from backfill.core.jobs import JobSpec
from tests.support.waiting import listening


def _counts(payloads: list[str]) -> list[int]:
    decoded = [json.loads(p) for p in payloads]
    # "r" is random so that identical notifications in one transaction are not merged by PostgreSQL.
    assert all(set(d) == {"r", "count"} and isinstance(d["r"], float) for d in decoded), payloads
    return [d["count"] for d in decoded]


async def test_add_job_notifies_a_count_of_one(conn: asyncpg.Connection[Any], database_url: str) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        await add_job(conn, "t")
        assert _counts(await notifications.wait_for_count(1)) == [1]
        assert _counts(await notifications.flush()) == [1]


async def test_add_jobs_notifies_once_with_the_batch_size(conn: asyncpg.Connection[Any], database_url: str) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        await add_jobs(conn, [JobSpec("t", {"n": n}) for n in range(7)])
        assert _counts(await notifications.flush()) == [7]


async def test_each_statement_notifies_separately(conn: asyncpg.Connection[Any], database_url: str) -> None:
    async with listening(database_url, "jobs:insert") as notifications:
        async with conn.transaction():
            await add_job(conn, "t")
            await add_job(conn, "t")
            await add_jobs(conn, [JobSpec("t"), JobSpec("t")])
        assert _counts(await notifications.flush()) == [1, 1, 2]


async def test_raw_insert_sends_nothing(conn: asyncpg.Connection[Any], database_url: str) -> None:
    # Workers must poll as well: rows can appear without a notification.
    await add_job(conn, "t")
    async with listening(database_url, "jobs:insert") as notifications:
        await conn.execute(
            "insert into graphile_worker._private_jobs (task_id) select id from graphile_worker._private_tasks"
        )
        assert await notifications.flush() == []


async def test_unsafe_dedupe_of_an_existing_job_sends_nothing(conn: asyncpg.Connection[Any], database_url: str) -> None:
    await add_job(conn, "t", job_key="k", job_key_mode="unsafe_dedupe")
    async with listening(database_url, "jobs:insert") as notifications:
        await add_job(conn, "t", job_key="k", job_key_mode="unsafe_dedupe")
        await add_job(conn, "t", job_key="fresh", job_key_mode="unsafe_dedupe")
        assert _counts(await notifications.flush()) == [1]
