"""Every blocking call of ``SyncBackfillClient`` is bounded: past its timeout it raises ``CallTimeoutError``
naming the call, and its work is cancelled on the loop (and on the server); ``close()`` is bounded too."""

from __future__ import annotations

import socket
import threading
import time
import traceback
from typing import Any

import asyncpg
import pytest

from backfill import CallTimeoutError, ConfigurationError, DatabaseError, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
# How far past its timeout a call may return: thread hand-offs on a loaded 2-core machine, not a second wait.
SLACK = 2.0
PAYLOAD = {"card": "4111-1111"}  # must appear in no error message nor traceback


async def _count(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {JOBS}"))


async def _lock_waiters(conn: asyncpg.Connection[Any]) -> int:
    return int(
        await conn.fetchval(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"
        )
    )


@pytest.mark.parametrize("where", ["constructor", "call"])
async def test_a_call_blocked_by_a_lock_raises_call_timeout_error_and_its_statement_is_cancelled(
    where: str, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = SyncBackfillClient(database_url, call_timeout=1 if where == "constructor" else 30)
    per_call: dict[str, Any] = {"call_timeout": 1} if where == "call" else {}
    try:
        client.enqueue("sync.warmup", {})  # the pool is open: the timeout below is the blocked statement's
        async with conn.transaction():
            await conn.execute(f"lock table {JOBS} in access exclusive mode")
            started = time.monotonic()
            with pytest.raises(CallTimeoutError) as caught:
                client.enqueue("sync.task", PAYLOAD, **per_call)
            elapsed = time.monotonic() - started
            assert 1 <= elapsed < 1 + SLACK
            assert str(caught.value).startswith(
                "SyncBackfillClient.enqueue('sync.task') did not finish within its 1s timeout and was cancelled"
            )
            assert isinstance(caught.value, TimeoutError)
            assert (caught.value.operation, caught.value.timeout) == ("SyncBackfillClient.enqueue('sync.task')", 1.0)
            assert "4111" not in "".join(traceback.format_exception(caught.value))
            # Cancelled on the server while the lock is still held: no backend is left waiting to write the job.
            await wait_for(lambda: _no_waiters(conn), timeout=5, message="the blocked insert was not cancelled")
        assert await _count(conn) == 1
        client.enqueue("sync.after", {})  # the client keeps working
        assert await _count(conn) == 2
    finally:
        client.close()


async def _no_waiters(conn: asyncpg.Connection[Any]) -> bool:
    return await _lock_waiters(conn) == 0


def test_a_server_that_never_answers_gives_a_call_timeout_error_without_the_password() -> None:
    # A socket that accepts connections (the kernel completes the handshake) and never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        client = SyncBackfillClient(f"postgresql://app:pw-s3cret@127.0.0.1:{port}/app", call_timeout=1)
        started = time.monotonic()
        with pytest.raises(CallTimeoutError, match=r"^SyncBackfillClient\.enqueue_many\(<1 requests>\) did not"):
            client.enqueue_many([Enqueue("sync.task", {})])
        assert time.monotonic() - started < 1 + SLACK
        assert "pw-s3cret" not in "".join(traceback.format_exception(caught_error(client)))
        started = time.monotonic()
        client.close(call_timeout=1)
        assert time.monotonic() - started < 1 + SLACK


def caught_error(client: SyncBackfillClient) -> BaseException:
    try:
        client.enqueue("sync.task", {}, call_timeout=0.5)
    except CallTimeoutError as error:
        return error
    raise AssertionError("the silent server answered")


async def test_close_cancels_a_call_stuck_on_a_lock_instead_of_waiting_for_it(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = SyncBackfillClient(database_url, call_timeout=30)
    client.enqueue("sync.warmup", {})
    outcome: list[BaseException | None] = []

    def stuck_call() -> None:
        try:
            client.enqueue("sync.task", {})
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    async with conn.transaction():
        await conn.execute(f"lock table {JOBS} in access exclusive mode")
        caller = threading.Thread(target=stuck_call)
        caller.start()
        await wait_for(lambda: _lock_waiters(conn), timeout=10, message="the call never reached the lock")
        started = time.monotonic()
        client.close(call_timeout=1)
        assert time.monotonic() - started < 1 + SLACK
        caller.join(SLACK)
        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], DatabaseError)
        assert "interrupted: the client was closed" in str(outcome[0])
        await wait_for(lambda: _no_waiters(conn), timeout=5, message="the stuck insert was not cancelled")
    assert await _count(conn) == 1  # the cancelled call wrote nothing once the lock was released


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "30", True])
def test_a_bad_call_timeout_is_refused_naming_the_option(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^call_timeout: must be a positive number of seconds"):
        SyncBackfillClient("postgresql://localhost/app", call_timeout=bad)
    client = SyncBackfillClient("postgresql://localhost/app")
    with pytest.raises(ConfigurationError, match=r"^call_timeout: "):
        client.enqueue("sync.task", {}, call_timeout=bad)
