"""The blocking API: its own loop thread, or the caller's DB-API connection and transaction."""

from __future__ import annotations

import json
import threading
from typing import Any

import asyncpg
import psycopg
import pytest

from backfill.client import sync_client
from backfill.client.sync_client import SyncBackfillClient
from backfill.core.errors import DatabaseError, JobSpecError

JOBS = "graphile_worker._private_jobs"


async def _count(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {JOBS}"))


async def test_blocking_enqueue_from_many_threads(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    # Called from worker threads, as a Flask or Django view would; the test's own loop stays free.
    errors: list[BaseException] = []
    with SyncBackfillClient(database_url) as client:

        def enqueue_some(thread: int) -> None:
            try:
                for n in range(5):
                    client.enqueue_fast("sync.task", {"thread": thread, "n": n})
            except BaseException as error:  # surfaced below
                errors.append(error)

        threads = [threading.Thread(target=enqueue_some, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert await _count(conn) == 20
    assert await conn.fetchval(f"select count(*) from {JOBS} where priority = -5") == 20


async def test_enqueue_on_a_psycopg_connection_commits_with_the_transaction(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = SyncBackfillClient(database_url)
    with psycopg.connect(database_url) as db:
        job = client.enqueue_bulk("sync.task", {"order": 1}, connection=db, queue="orders", lane="reports")
        assert job.task_identifier == "sync.task"
        assert job.queue_name is None or job.queue_name == "orders"
        assert await _count(conn) == 0  # not committed yet
        db.commit()
    row = await conn.fetchrow(f"select payload::text, priority, flags::text, max_attempts from {JOBS}")
    assert row is not None
    assert json.loads(row["payload"]) == {"order": 1}
    assert row["priority"] == 0
    assert set(json.loads(row["flags"])) == {"backfill:retry=default", "backfill:lane", "backfill:lane=reports"}
    assert row["max_attempts"] == 8


async def test_enqueue_on_a_psycopg_connection_is_rolled_back_with_it(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = SyncBackfillClient(database_url)
    with psycopg.connect(database_url) as db:
        client.enqueue("sync.task", {}, connection=db)
        db.rollback()
    assert await _count(conn) == 0


async def test_bad_input_is_refused_before_the_connection_is_used(database_url: str) -> None:
    client = SyncBackfillClient(database_url)
    with psycopg.connect(database_url) as db:
        with pytest.raises(JobSpecError, match=r"^priority: "):
            client.enqueue("sync.task", {}, priority="high", connection=db)
        assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


async def test_a_database_error_on_the_callers_connection_is_wrapped(database_url: str) -> None:
    client = SyncBackfillClient(database_url, schema="no_such_schema")
    with psycopg.connect(database_url) as db, pytest.raises(DatabaseError, match="add_job"):
        client.enqueue("sync.task", {}, connection=db)


async def test_module_level_sync_functions_use_the_environment(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setattr(sync_client, "_default", {})
    try:
        job = sync_client.enqueue_critical("sync.task", {"a": 1})
    finally:
        sync_client.default_client().close()
    assert await conn.fetchval(f"select priority from {JOBS} where id = $1", job.id) == -20


async def test_a_closed_client_starts_again_on_the_next_call(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    # close() stops the loop thread and its pool; the next call starts both again.
    client = SyncBackfillClient(database_url)
    client.enqueue("sync.task", {})
    client.close()
    client.enqueue("sync.task", {})
    client.close()
    assert await _count(conn) == 2
