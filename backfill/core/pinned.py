"""A pool connection held across calls by one of the worker's own loops (fetcher, completer).

Acquiring and releasing per statement costs a reset round trip on every release (asyncpg's pool runs
``RESET ALL``/``UNLISTEN *`` there), which sat on the schedule-to-start path of every job. The fetcher and
the completer each issue one statement at a time, so each keeps one connection for as long as it works and
gives it back — to be replaced — only when it breaks.
"""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg


class PinnedConnection:
    """Lazily acquires one connection from ``pool``; ``setup`` runs on each new one."""

    def __init__(self, pool: asyncpg.Pool[Any], *, setup: str | None = None) -> None:
        self._pool = pool
        self._setup = setup
        self._connection: Any = None

    async def get(self) -> Any:
        """The held connection, acquiring (and setting up) a fresh one if there is none or it closed."""
        if self._connection is not None and not _is_open(self._connection):
            await self._give_back(terminate=False)
        if self._connection is None:
            self._connection = await self._pool.acquire()
            if self._setup:
                try:
                    await self._connection.execute(self._setup)
                except BaseException:
                    await self._give_back(terminate=True)
                    raise
        return self._connection

    async def discard(self) -> None:
        """Drop the connection after an error: closed at once, so the pool replaces it instead of reusing it.

        After an error its state is unknown (asyncpg may be midway through a protocol exchange), and a reset
        on release could hang or hand the same broken connection to the next caller.
        """
        await self._give_back(terminate=True)

    async def close(self) -> None:
        """Give a healthy connection back to the pool at shutdown."""
        await self._give_back(terminate=False)

    async def _give_back(self, *, terminate: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if terminate:
            # A proxy the pool already took back (its connection died) refuses every call: nothing to close.
            with contextlib.suppress(asyncpg.InterfaceError):
                connection.terminate()
        # Always released, closed or not: the pool's release finishes the clean-up of a connection that died
        # under us, and returns at once for a proxy it already took back. Skipping it would leak the slot.
        with contextlib.suppress(Exception):
            await self._pool.release(connection, timeout=1.0)


def _is_open(connection: Any) -> bool:
    """Open and still ours. When a pooled connection dies, asyncpg's pool may take it back on its own and
    detach our proxy, whose every method then raises InterfaceError."""
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:
        return False
