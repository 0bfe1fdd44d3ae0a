"""A client used before a fork (gunicorn ``--preload``, multiprocessing): the child starts afresh, and the
parent's connections survive the child.

Each test uses a client in the parent (so its loop thread and pool exist), forks a real child that enqueues
through the same client object and exits, and then checks three things: the child finished within a deadline
(it used to wait for ever on the parent's loop thread, which does not exist in the child), the parent's own
database sessions are still the same ones (the child abandoned them instead of closing them, which would have
sent PostgreSQL a Terminate on the parent's connection), and every job is in the database.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

import asyncpg
import pytest

from backfill.client import sync_client
from backfill.client.async_client import BackfillClient
from backfill.client.sync_client import SyncBackfillClient
from backfill.core.errors import DatabaseError
from tests.support.waiting import WaitTimeout, wait_for

# Forking a process whose client thread runs is the very case under test (gunicorn --preload, multiprocessing);
# Python 3.12+ warns about it on every fork.
pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")

JOBS = "graphile_worker._private_jobs"
APP = "backfill-fork-test"
# A child needs one new connection and one statement; far less than this even on a loaded 2-core machine.
CHILD_DEADLINE = 20.0


def _tagged(database_url: str) -> str:
    # asyncpg passes unknown URL parameters to the server as settings: the parent's sessions become findable.
    return f"{database_url}{'&' if '?' in database_url else '?'}application_name={APP}"


def _run_in_child(work: Callable[[], object]) -> NoReturn:
    """The body of a forked child: never return into pytest, whatever happens."""
    code = 0
    try:
        work()
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


class Child:
    """A forked child the parent waits for with a deadline, and kills if it hangs."""

    def __init__(self, how: str, work: Callable[[], object]) -> None:
        self.how = how
        if how == "os.fork":
            self.pid = os.fork()
            if self.pid == 0:
                _run_in_child(work)
            self._status: int | None = None
        else:
            self.process = multiprocessing.get_context("fork").Process(target=_run_in_child, args=(work,))
            self.process.start()
            assert self.process.pid is not None
            self.pid = self.process.pid

    def exit_code(self) -> int | None:
        if self.how == "os.fork":
            if self._status is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid == 0:
                    return None
                self._status = os.waitstatus_to_exitcode(status)
            return self._status
        return self.process.exitcode

    async def wait(self, deadline: float = CHILD_DEADLINE) -> int:
        async def finished() -> bool:
            return self.exit_code() is not None

        try:
            await wait_for(finished, timeout=deadline, interval=0.05)
        except WaitTimeout:
            os.kill(self.pid, signal.SIGKILL)
            await wait_for(finished, timeout=10)
            pytest.fail(f"the child ({self.how}) hung: still running after {deadline:g}s, killed")
        code = self.exit_code()
        assert code is not None
        return code


async def _session_pids(conn: asyncpg.Connection[Any]) -> set[int]:
    rows = await conn.fetch(
        "select pid from pg_stat_activity where datname = current_database() and application_name = $1", APP
    )
    return {row["pid"] for row in rows}


async def _tasks(conn: asyncpg.Connection[Any]) -> list[str]:
    rows = await conn.fetch(
        f"select t.identifier from {JOBS} j join graphile_worker._private_tasks t on t.id = j.task_id order by j.id"
    )
    return [row["identifier"] for row in rows]


async def _parent_sessions_outlive(conn: asyncpg.Connection[Any], child: Child, parent_sessions: set[int]) -> None:
    assert await child.wait() == 0, "the child failed (its traceback is in the captured stderr)"
    # A child that closed the parent's connections would have ended these backends (Terminate message).
    assert parent_sessions <= await _session_pids(conn)


@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
async def test_a_client_used_before_a_fork_enqueues_in_the_child(
    how: str, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = SyncBackfillClient(_tagged(database_url))
    try:
        client.enqueue("fork.parent.before", {})
        parent_sessions = await _session_pids(conn)
        assert parent_sessions  # the pool is open in the parent

        def child_work() -> None:
            client.enqueue("fork.child", {"pid": os.getpid()})
            client.close()  # closes only the child's own pool

        child = Child(how, child_work)
        await _parent_sessions_outlive(conn, child, parent_sessions)
        client.enqueue("fork.parent.after", {})  # the parent's pool still works
    finally:
        client.close()
    assert await _tasks(conn) == ["fork.parent.before", "fork.child", "fork.parent.after"]
    assert await conn.fetchval(f"select (payload->>'pid')::int from {JOBS} where payload::jsonb ? 'pid'") == child.pid


async def test_the_default_sync_client_starts_afresh_in_a_forked_child(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", _tagged(database_url))
    monkeypatch.setattr(sync_client, "_default", {})
    try:
        sync_client.enqueue("fork.parent.before", {})
        parent_sessions = await _session_pids(conn)
        child = Child("os.fork", lambda: sync_client.enqueue("fork.child", {}))
        await _parent_sessions_outlive(conn, child, parent_sessions)
        sync_client.enqueue("fork.parent.after", {})
    finally:
        sync_client.default_client().close()
    assert await _tasks(conn) == ["fork.parent.before", "fork.child", "fork.parent.after"]


async def test_a_fork_while_another_thread_holds_the_clients_lock(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    # A thread of the parent may be inside the client (starting its loop) at the moment another thread forks:
    # the child's copy of the lock is then held by a thread that does not exist in the child.
    client = SyncBackfillClient(database_url)
    try:
        client.enqueue("fork.parent.before", {})
        holding, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with client._lock:
                holding.set()
                release.wait(CHILD_DEADLINE)

        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        assert holding.wait(10)
        try:
            child = Child("os.fork", lambda: client.enqueue("fork.child", {}))
        finally:
            release.set()
            holder.join()
        assert await child.wait() == 0
    finally:
        client.close()
    assert await _tasks(conn) == ["fork.parent.before", "fork.child"]


async def test_an_async_client_used_before_a_fork_opens_a_fresh_pool_in_the_child(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(_tagged(database_url))
    try:
        await client.enqueue("fork.parent.before", {})
        parent_sessions = await _session_pids(conn)

        def child_work() -> None:
            # A new event loop in the child, as a forked web worker starts one; run on a thread because the
            # forked copy of this thread still counts pytest's loop as running.
            errors: list[BaseException] = []

            async def enqueue_and_close() -> None:
                await client.enqueue("fork.child", {})
                await client.close()

            def run() -> None:
                try:
                    asyncio.run(enqueue_and_close())
                except BaseException as error:
                    errors.append(error)

            thread = threading.Thread(target=run)
            thread.start()
            thread.join()
            if errors:
                raise errors[0]

        child = Child("os.fork", child_work)
        await _parent_sessions_outlive(conn, child, parent_sessions)
        await client.enqueue("fork.parent.after", {})
    finally:
        await client.close()
    assert await _tasks(conn) == ["fork.parent.before", "fork.child", "fork.parent.after"]


async def test_a_callers_pool_used_after_a_fork_is_refused_with_a_clear_error(database_url: str) -> None:
    # A pool the caller passed in cannot be reopened by backfill; in the child it is refused, not used.
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        client = BackfillClient(pool)
        await client.enqueue("fork.parent", {})
        read, write = os.pipe()

        def child_work() -> None:
            async def attempt() -> str:
                try:
                    await client.enqueue("fork.child", {})
                except DatabaseError as error:
                    return str(error)
                return "no error"

            outcome: list[str] = []
            thread = threading.Thread(target=lambda: outcome.append(asyncio.run(attempt())))
            thread.start()
            thread.join()
            os.write(write, (outcome[0] if outcome else "the thread failed").encode())

        child = Child("os.fork", child_work)
        os.close(write)
        assert await child.wait() == 0
        with os.fdopen(read) as pipe:
            message = pipe.read()
        assert "fork" in message and "pool" in message, message
        await client.enqueue("fork.parent.after", {})  # the caller's pool is untouched in the parent


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_closing_the_inherited_client_in_the_child_leaves_the_parents_sessions_open(
    kind: str, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    # A child's shutdown hook (atexit, gunicorn's worker_exit) may close the client without having used it;
    # closing the parent's connections would send Terminate on them and end the parent's sessions.
    if kind == "sync":
        sync = SyncBackfillClient(_tagged(database_url))
        sync.enqueue("fork.parent.before", {})
        close_in_child: Callable[[], object] = sync.close
    else:
        client = BackfillClient(_tagged(database_url))
        await client.enqueue("fork.parent.before", {})

        def close_in_child() -> None:
            thread = threading.Thread(target=lambda: asyncio.run(client.close()))
            thread.start()
            thread.join()

    try:
        parent_sessions = await _session_pids(conn)
        await _parent_sessions_outlive(conn, Child("os.fork", close_in_child), parent_sessions)
        if kind == "sync":
            sync.enqueue("fork.parent.after", {})
        else:
            await client.enqueue("fork.parent.after", {})
    finally:
        if kind == "sync":
            sync.close()
        else:
            await client.close()
    assert await _tasks(conn) == ["fork.parent.before", "fork.parent.after"]
