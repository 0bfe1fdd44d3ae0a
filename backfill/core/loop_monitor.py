"""A watchdog for the event loop: reports code that blocks it, with the stack that is blocking.

An ``async def`` handler that calls blocking code (``time.sleep``, a synchronous HTTP client, a CPU-bound
loop) stops everything else on the loop: fetching, result writing, the LISTEN connection and the heartbeat
— long enough, and a sweeper declares the worker dead. Such code is a bug in the handler; the watchdog's job
is to make it obvious. A coroutine on the loop stamps the time every ``threshold / 2`` seconds; a daemon
thread checks the stamp as often, and when it is older than ``threshold`` it logs the loop thread's current stack
(which names the blocking function) once per stall, and emits ``loop:blocked`` when the loop is back.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback

from backfill.core.events import Events

logger = logging.getLogger("backfill.worker")


class LoopMonitor:
    def __init__(self, threshold: float, *, events: Events, worker_id: str) -> None:
        self._threshold = threshold
        self._events = events
        self._worker_id = worker_id
        self._last_tick = time.monotonic()
        self._stopped = threading.Event()
        self.stalls = 0

    def _emit_blocked(self, seconds: float, stack: str) -> None:
        self._events.emit("loop:blocked", worker_id=self._worker_id, seconds=seconds, stack=stack)

    async def run(self) -> None:
        """Stamp the loop's liveness until cancelled; the watching thread lives as long as this does."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        watcher = threading.Thread(
            target=self._watch, args=(loop, loop_thread), name="backfill-loop-monitor", daemon=True
        )
        self._stopped.clear()
        watcher.start()
        try:
            while True:
                self._last_tick = time.monotonic()
                # Half the threshold: a stall is seen within 1.5 thresholds, and the thread, which must take the
                # GIL to look, wakes only twice per threshold (it competes with the loop for the GIL when it does).
                await asyncio.sleep(self._threshold / 2)
        finally:
            self._stopped.set()

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        reported = False
        while not self._stopped.wait(self._threshold / 2):
            stalled_for = time.monotonic() - self._last_tick
            if stalled_for < self._threshold:
                reported = False
                continue
            if reported:
                continue
            reported = True
            self.stalls += 1
            frame = sys._current_frames().get(loop_thread)
            stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else "(stack unavailable)"
            logger.error(
                "worker %s: the event loop has been blocked for %.1fs; something called blocking code on it "
                "(use a plain def handler, asyncio.to_thread or an async library). Blocking stack:\n%s",
                self._worker_id,
                stalled_for,
                stack,
            )
            # Delivered when the loop runs again; listeners must not run on this thread.
            try:
                loop.call_soon_threadsafe(self._emit_blocked, stalled_for, stack)
            except RuntimeError:  # the loop closed meanwhile
                return
