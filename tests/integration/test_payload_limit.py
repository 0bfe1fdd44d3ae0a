"""BACKFILL_MAX_PAYLOAD_BYTES: payloads over the client's limit are refused at enqueue, with an error naming the
task, the size and the limit (never the payload), and nothing is written — on every way in through the client."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from backfill.core.errors import PayloadTooLargeError

JOBS = "graphile_worker._private_jobs"
LIMIT = 10_000
SECRET = "s3cr3t-payload-value"


def payload_of(size: int, *, char: str = "x") -> dict[str, str]:
    """A payload whose JSON is exactly ``size`` bytes: {"data":"<SECRET><fill>"} (11 bytes of frame)."""
    fill = size - len('{"data":""}') - len(SECRET)
    assert fill % len(char.encode()) == 0
    return {"data": SECRET + char * (fill // len(char.encode()))}


async def _count(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {JOBS}"))


def _assert_names_task_size_and_limit(error: PayloadTooLargeError, task: str, size: int) -> None:
    message = str(error)
    assert repr(task) in message
    assert f"{size:,} bytes" in message and f"{LIMIT:,} bytes" in message
    assert "BACKFILL_MAX_PAYLOAD_BYTES" in message
    assert SECRET not in message and "xxxx" not in message
    assert (error.task, error.size, error.limit) == (task, size, LIMIT)


async def test_a_payload_over_the_limit_is_refused_and_nothing_is_written(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool, max_payload_bytes=LIMIT)
    await client.enqueue("limits.task", payload_of(LIMIT))  # exactly the limit is allowed
    with pytest.raises(PayloadTooLargeError) as raised:
        await client.enqueue("limits.task", payload_of(LIMIT + 1))
    _assert_names_task_size_and_limit(raised.value, "limits.task", LIMIT + 1)
    assert raised.value.field == "payload"
    assert await _count(conn) == 1


async def test_the_limit_counts_utf8_bytes_not_characters(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool, max_payload_bytes=LIMIT)
    payload = payload_of(LIMIT + 1, char="é")  # fewer characters than LIMIT, more bytes
    assert len(str(payload)) < LIMIT
    with pytest.raises(PayloadTooLargeError) as raised:
        await client.enqueue("limits.task", payload)
    assert raised.value.size == LIMIT + 1
    assert await _count(conn) == 0


async def test_enqueue_many_names_the_request_and_writes_none_of_the_batch(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool, max_payload_bytes=LIMIT)
    requests = [Enqueue("limits.small", {"n": 1}), Enqueue("limits.big", payload_of(2 * LIMIT))]
    with pytest.raises(PayloadTooLargeError) as raised:
        await client.enqueue_many(requests)
    assert raised.value.field == "requests[1].payload"
    _assert_names_task_size_and_limit(raised.value, "limits.big", 2 * LIMIT)
    assert await _count(conn) == 0


async def test_zero_turns_the_limit_off(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    client = BackfillClient(pool, max_payload_bytes=0)
    job = await client.enqueue("limits.task", payload_of(3 * 1024 * 1024))
    assert len(job.payload["data"]) > 3_000_000
    assert await _count(conn) == 1


async def test_the_default_is_one_mebibyte(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    client = BackfillClient(pool)
    assert client.max_payload_bytes == 1024 * 1024
    with pytest.raises(PayloadTooLargeError):
        await client.enqueue("limits.task", payload_of(1024 * 1024 + 1))
    assert await _count(conn) == 0


async def test_from_env_reads_the_variable(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKFILL_MAX_PAYLOAD_BYTES", str(LIMIT))
    async with BackfillClient.from_env() as client:
        assert client.max_payload_bytes == LIMIT
        with pytest.raises(PayloadTooLargeError):
            await client.enqueue("limits.task", payload_of(LIMIT + 1))
    assert await _count(conn) == 0


async def test_the_sync_client_is_refused_too_on_its_loop_and_on_a_dbapi_connection(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    def blocking() -> None:
        with SyncBackfillClient(database_url, max_payload_bytes=LIMIT) as client:
            with pytest.raises(PayloadTooLargeError):
                client.enqueue("limits.task", payload_of(LIMIT + 1))
            with pytest.raises(PayloadTooLargeError):
                client.enqueue_many([Enqueue("limits.task", payload_of(LIMIT + 1))])
            with psycopg.connect(database_url) as db:
                with pytest.raises(PayloadTooLargeError):
                    client.enqueue("limits.task", payload_of(LIMIT + 1), connection=db)
                db.commit()

    await asyncio.wait_for(asyncio.to_thread(blocking), 30)
    assert await _count(conn) == 0


def test_a_bad_limit_is_a_configuration_error_naming_it() -> None:
    from backfill.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_payload_bytes"):
        BackfillClient("postgresql://localhost/x", max_payload_bytes=-1)
