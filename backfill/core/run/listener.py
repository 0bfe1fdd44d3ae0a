"""The LISTEN connection: wake-ups on ``jobs:insert`` and shutdown on breaking ``worker:migrate``.

NOTIFY is a hint, not a delivery guarantee: notifications sent while the connection is down are lost. So
after every (re)connection the listener asks for one fetch, and the worker polls as a safety net anyway.
The connection is held for the listener alone (a pooled connection would lose its LISTEN on release),
and it is re-established with capped, jittered exponential backoff when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from backfill.core.db import redact_dsn
from backfill.core.retry import ConsecutiveFailures

logger = logging.getLogger("backfill.listener")

JOBS_INSERT_CHANNEL = "jobs:insert"
WORKER_MIGRATE_CHANNEL = "worker:migrate"

# How the listener gets and gives back its connection: a dedicated asyncpg.connect()/close() when the worker
# knows the DSN, or acquire()/release() on a pool the caller passed in.
ConnectFactory = Callable[[], Awaitable[Any]]
ReleaseFunction = Callable[[Any], Awaitable[None]]

# What a dying connection can raise. InternalClientError belongs here: a pooled connection whose server
# was just terminated can be handed out before asyncpg has noticed, and its first query then fails with
# "cannot switch to state ...; another operation is in progress" rather than a connection error.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


def listener_connections(database: Any, pool: Any) -> tuple[ConnectFactory, ReleaseFunction]:
    """How the listener connects: its own connection from a DSN (it does not take a pool slot), or one
    held from the caller's pool when the worker was given a pool and no DSN."""
    if isinstance(database, str):
        dsn = database

        async def connect_dsn() -> Any:
            return await asyncpg.connect(dsn)

        async def close(connection: Any) -> None:
            await connection.close()

        return connect_dsn, close

    async def acquire() -> Any:
        return await pool.acquire()

    async def release(connection: Any) -> None:
        await pool.release(connection)

    return acquire, release


def parse_insert_count(payload: str) -> int:
    """How many jobs a ``jobs:insert`` notification announces; an unreadable payload counts as one."""
    try:
        count = json.loads(payload).get("count", 1)
        return int(count)
    except (ValueError, TypeError, AttributeError):
        return 1


class Listener:
    """Keeps one connection LISTENing and reports what it hears through callbacks.

    ``on_jobs(count)`` is called for every ``jobs:insert`` notification with a positive count, and with
    ``count=0`` after each (re)connection to request the catch-up fetch. ``on_migrate(payload)`` receives
    each ``worker:migrate`` payload, parsed.
    """

    def __init__(
        self,
        connect: ConnectFactory,
        release: ReleaseFunction,
        *,
        on_jobs: Callable[[int], None],
        on_migrate: Callable[[dict[str, Any]], None],
        on_state: Callable[[str, BaseException | None], None] = lambda state, error: None,
        dsn_for_logs: str = "",
    ) -> None:
        self._connect = connect
        self._release = release
        self._on_jobs = on_jobs
        self._on_migrate = on_migrate
        # Told "connecting", "success" and "error" (with the error): the worker turns them into pool:listen:*.
        self._on_state = on_state
        self._dsn_for_logs = redact_dsn(dsn_for_logs) if dsn_for_logs else "the database"
        self._connection: Any = None
        self._lost = asyncio.Event()
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        failures = ConsecutiveFailures()
        try:
            while True:
                self._on_state("connecting", None)
                try:
                    await self._open()
                except CONNECTION_ERRORS as error:
                    self._on_state("error", error)
                    await asyncio.sleep(failures.failed(logger, f"LISTEN connection to {self._dsn_for_logs}", error))
                    continue
                self._on_state("success", None)
                if failures.succeeded() or self.reconnects:
                    logger.info("LISTEN connection to %s re-established", self._dsn_for_logs)
                # Notifications sent while we were away are lost: fetch once to catch up.
                self._on_jobs(0)
                await self._lost.wait()
                self.connected.clear()
                self.reconnects += 1
                self._on_state("error", ConnectionError("the LISTEN connection was lost"))
                logger.warning("LISTEN connection to %s lost; reconnecting", self._dsn_for_logs)
                await self._discard()
        finally:
            await self._discard()

    def check_alive(self) -> None:
        """Called on every poll: a connection closed without a termination callback is also 'lost'."""
        if self._connection is None:
            return
        try:
            closed = self._connection.is_closed()
        except asyncpg.InterfaceError:
            # A pool takes a dead connection back on its own and detaches our proxy, which then refuses
            # every call: that connection is gone too.
            closed = True
        if closed:
            self._lost.set()

    async def _open(self) -> None:
        self._lost.clear()
        connection = await self._connect()
        try:
            connection.add_termination_listener(self._terminated)
            await connection.add_listener(JOBS_INSERT_CHANNEL, self._jobs_inserted)
            await connection.add_listener(WORKER_MIGRATE_CHANNEL, self._migrated)
        except BaseException:
            await self._give_back(connection)
            raise
        self._connection = connection
        self.connected.set()

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await self._give_back(connection)

    async def _give_back(self, connection: Any) -> None:
        # Bounded: releasing a connection whose server is gone must not hang the worker's shutdown.
        unlistened = False
        with contextlib.suppress(Exception):
            if not connection.is_closed():
                connection.remove_termination_listener(self._terminated)
                await asyncio.wait_for(connection.remove_listener(JOBS_INSERT_CHANNEL, self._jobs_inserted), 1.0)
                await asyncio.wait_for(connection.remove_listener(WORKER_MIGRATE_CHANNEL, self._migrated), 1.0)
                unlistened = True
        if not unlistened:
            # A connection that could not UNLISTEN (it died mid-way) is closed rather than handed back to a
            # pool still subscribed to our channels.
            with contextlib.suppress(Exception):
                connection.terminate()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._release(connection), timeout=1.0)

    def _terminated(self, _connection: Any) -> None:
        self._lost.set()

    def _jobs_inserted(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        count = parse_insert_count(str(payload))
        if count > 0:  # remove_job announces -1: nothing new to fetch
            self._on_jobs(count)

    def _migrated(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            parsed = json.loads(str(payload))
        except ValueError:
            parsed = {}
        self._on_migrate(parsed if isinstance(parsed, dict) else {})
