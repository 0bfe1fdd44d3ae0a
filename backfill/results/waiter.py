"""Waiting for jobs to end: woken by the worker's notification, checked by a slow poll in case one is missed.

The worker notifies ``backfill:results`` with the job's id in the statement that keeps its outcome
(core/sql/release.sql, ``keep_outcomes``), so a waiter learns of the end within a round trip instead of a polling
interval. One LISTEN connection serves every wait of a client: it is taken from the client's pool by the first
waiter and given back by the last. A notification only wakes; the outcome is always read from the table, after
LISTEN took effect, so an end between the first read and the notification is never missed. The poll
(``poll_interval``, 5 s by default) covers what notifications cannot: a listener connection lost and not yet
back, and a job that ended without keeping anything (run by a worker that does not know it should).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from backfill.core import ResultTimeoutError
from backfill.results.models import JobOutcome

logger = logging.getLogger("backfill.results")

CHANNEL = "backfill:results"
DEFAULT_POLL_INTERVAL = 5.0


class OutcomeWaiter:
    """Waits of one client. ``pool`` gives the pool to take the LISTEN connection from."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool[Any]]]) -> None:
        self._pool = pool
        self._waiting: dict[int, set[asyncio.Event]] = {}
        self._connection: Any = None  # the pool's connection while anyone waits
        self._listening = asyncio.Lock()
        self._closing = False

    async def wait(
        self,
        job_id: int,
        check: Callable[[], Awaitable[JobOutcome | None]],
        *,
        timeout: float | None,  # noqa: ASYNC109 - the wait's own bound, raised as ResultTimeoutError
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> JobOutcome:
        """``check()`` until it gives an outcome: now, on each notification for ``job_id``, and every
        ``poll_interval`` seconds. ``check`` raises when no outcome will come; :class:`ResultTimeoutError` after
        ``timeout`` seconds (``None``: no limit)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        woken = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(woken)
        try:
            while True:
                await self._listen()  # before the read: an end after it is then notified to us
                woken.clear()
                outcome = await check()
                if outcome is not None:
                    return outcome
                pause = poll_interval
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise ResultTimeoutError(job_id, float(timeout or 0.0))
                    pause = min(pause, left)
                with contextlib.suppress(TimeoutError):  # the poll's turn
                    await asyncio.wait_for(woken.wait(), pause)
        finally:
            events = self._waiting.get(job_id)
            if events is not None:
                events.discard(woken)
                if not events:
                    del self._waiting[job_id]
            if not self._waiting:
                await self._unlisten()

    async def close(self) -> None:
        """Give the LISTEN connection back (before the client closes its pool)."""
        self._closing = True
        await self._unlisten()

    async def _listen(self) -> None:
        async with self._listening:
            connection = self._connection
            if connection is not None and not connection.is_closed():
                return
            pool = await self._pool()
            if connection is not None:  # lost: the pool replaces it
                self._connection = None
                await pool.release(connection)
            connection = await pool.acquire()
            try:
                await connection.add_listener(CHANNEL, self._notified)
            except BaseException:
                await pool.release(connection)
                raise
            connection.add_termination_listener(self._lost)
            self._connection = connection

    async def _unlisten(self) -> None:
        async with self._listening:
            if self._waiting and not self._closing:  # a wait began meanwhile: it listens on this connection
                return
            connection, self._connection = self._connection, None
            if connection is None:
                return
            # asyncpg keeps a termination listener across the release: left on, it would report the loss of a
            # connection that someone else is using by then.
            connection.remove_termination_listener(self._lost)
            try:
                if not connection.is_closed():
                    await connection.remove_listener(CHANNEL, self._notified)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass  # a broken connection: the pool discards it on release
            finally:
                await (await self._pool()).release(connection)

    def _lost(self, connection: Any) -> None:
        # The next turn of each wait takes a new connection; meanwhile the poll stands in for notifications.
        logger.warning("the connection listening for job outcomes was lost; listening again")
        for events in self._waiting.values():
            for event in events:
                event.set()

    def _notified(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        for text in str(payload).split(","):
            try:
                events = self._waiting.get(int(text))
            except ValueError:
                continue  # not ours to read (a notification sent by hand): the poll still checks
            for event in events or ():
                event.set()
