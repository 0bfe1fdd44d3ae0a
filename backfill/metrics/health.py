"""Health checks for ``/healthz`` and ``/readyz``, answered from the metrics server's thread.

Both are read from a thread that is not the event loop's, and neither may touch the database from there:

* :class:`LoopLiveness` (``/healthz``): the process is alive if its event loop still runs callbacks. It asks
  the loop to set a flag (``call_soon_threadsafe``) and waits ``timeout`` seconds for it; a loop blocked by a
  handler, stopped or closed fails. Half a second by default: under Kubernetes' 1 s probe timeout, and a
  healthy loop answers in microseconds.
* :class:`Readiness` (``/readyz``): ready while every lane's worker runs (from its events: ``worker:create``
  up, ``gracefulShutdown`` / ``worker:stop`` down) and the database answered recently. The database is
  probed by :meth:`Readiness.probe_database`, a side task on the loop that runs ``select 1`` on the runner's
  pool every second; a probe only reads the time of the last answer. So a flood of probes costs no query, and
  a probe never waits on the pool from a foreign thread. A database that stops answering (or a pool whose
  connections are all taken by handlers for longer than ``probe_timeout``) is reported within
  ``stale_after`` seconds (3 by default).

Each check returns ``(ok, reason)``: ``reason`` is one short line (``"ok"``, or what is wrong), never an error
message from the driver, which could carry connection details.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from backfill.core import Event, Events

Check = Callable[[], tuple[bool, str]]

_LANE_UP_EVENTS = ("worker:create",)
_LANE_DOWN_EVENTS = ("gracefulShutdown", "worker:stop")


class LoopLiveness:
    """``/healthz``: does ``loop`` run a callback within ``timeout`` seconds? Call it from another thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, timeout: float = 0.5) -> None:
        self._loop = loop
        self.timeout = timeout

    def __call__(self) -> tuple[bool, str]:
        answered = threading.Event()
        try:
            self._loop.call_soon_threadsafe(answered.set)
        except RuntimeError:  # the loop is closed
            return False, "event loop closed"
        if answered.wait(self.timeout):
            return True, "ok"
        return False, f"event loop did not answer within {self.timeout:g}s (blocked or stopped)"


class Readiness:
    """``/readyz``: every lane running and the database answering. See the module docstring."""

    def __init__(
        self,
        lanes: Iterable[str],
        *,
        probe_interval: float = 1.0,
        probe_timeout: float = 2.0,
        stale_after: float = 3.0,
    ) -> None:
        self._running = dict.fromkeys(lanes, False)  # written on the loop, read by the server's thread
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.stale_after = stale_after
        self._answered_at: float | None = None  # time.monotonic() of the database's last answer
        self._failure: str | None = None  # the last probe's error class, if it failed

    def observe(self, events: Events, lane: str) -> Callable[[], None]:
        """Follow ``lane``'s worker through its ``events``; returns the function that stops following."""

        def up(_event: Event) -> None:
            self._running[lane] = True

        def down(_event: Event) -> None:
            self._running[lane] = False

        stops = [events.on(name, up) for name in _LANE_UP_EVENTS]
        stops += [events.on(name, down) for name in _LANE_DOWN_EVENTS]

        def stop() -> None:
            for remove in stops:
                remove()

        return stop

    async def probe_database(self, pool: asyncpg.Pool[Any]) -> None:
        """Run ``select 1`` every ``probe_interval`` seconds until cancelled; never raises otherwise."""
        while True:
            try:
                async with asyncio.timeout(self.probe_timeout):
                    async with pool.acquire() as connection:
                        await connection.fetchval("select 1")
            except Exception as error:  # any failure means "not answering"; the next round tries again
                self._failure = type(error).__name__
            else:
                self._answered_at = time.monotonic()
                self._failure = None
            await asyncio.sleep(self.probe_interval)

    def __call__(self) -> tuple[bool, str]:
        reasons = []
        stopped = [lane for lane, running in self._running.items() if not running]
        if stopped:
            reasons.append(f"lanes not running: {', '.join(stopped)}")
        answered_at, failure = self._answered_at, self._failure
        if answered_at is None:
            reasons.append("database not answered yet" + (f" ({failure})" if failure else ""))
        elif time.monotonic() - answered_at > self.stale_after:
            silence = time.monotonic() - answered_at
            reasons.append(f"database not answering for {silence:.1f}s" + (f" ({failure})" if failure else ""))
        return (not reasons, "; ".join(reasons) or "ok")
