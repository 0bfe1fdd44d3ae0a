"""A watchdog for the event loop: reports code that blocks it, with the stack that is blocking.

An ``async def`` handler that calls blocking code (``time.sleep``, a synchronous HTTP client, a CPU-bound
loop) stops everything else on the loop: fetching, result writing, the LISTEN connection and the heartbeat
— long enough, and a sweeper declares the worker dead. Such code is a bug in the handler; the watchdog's job
is to make it obvious. A coroutine on the loop stamps the time every ``threshold / 2`` seconds; a daemon
thread checks the stamp as often, and when it is older than ``threshold`` it logs the loop thread's current stack
(which names the blocking function) once per stall, and emits ``loop:blocked`` when the loop is back.

Not every stall is the handler's: backfill itself can hold the loop (decoding a large payload on the claim
path, which no thread can take off the loop while the JSON decoder holds the GIL). The report tells the two
apart by the frames of the callback the loop is running: if they are backfill's own and the standard
library's only, the stall is reported as backfill's, and the user is not told to fix their handler.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
from pathlib import Path
from types import FrameType

import asyncpg
import croniter

from backfill.core.events import Events

logger = logging.getLogger("backfill.worker")

# Whose code is running, by file: backfill's own and the drivers it runs on (asyncpg, croniter), or the standard
# library's; any other frame is the application's (a handler, or a library a handler called).
_OURS_DIRS = tuple(
    str(Path(module.__file__).resolve().parent) + os.sep
    for module in (sys.modules["backfill"], asyncpg, croniter)
    if module.__file__ is not None
)
_STDLIB_DIRS = tuple({str(Path(sysconfig.get_paths()[key]).resolve()) + os.sep for key in ("stdlib", "platstdlib")})
# asyncio's Handle._run: the frame every loop callback (a task's step included) runs under.
_DISPATCH_FILE = str(Path(asyncio.events.__file__).resolve())

HANDLER, BACKFILL, UNKNOWN = "handler", "backfill", "unknown"
_WHAT_TO_DO = {
    HANDLER: "; something called blocking code on it (use a plain def handler, asyncio.to_thread or an async "
    "library). Blocking",
    BACKFILL: " inside backfill itself, not in a handler (a large payload being decoded, say: see "
    "BACKFILL_MAX_PAYLOAD_BYTES).",
    UNKNOWN: " outside any handler, in the standard library (a garbage collection or the loop's own I/O, say).",
}


def culprit(frame: FrameType | None) -> str:
    """Whose code the loop callback running ``frame`` (its innermost frame) is: ``"handler"`` if any frame
    between it and the loop's dispatch is outside backfill, its drivers and the standard library (a handler,
    or a library a handler called); ``"backfill"`` if some frame is backfill's or its drivers' and none is the
    application's; ``"unknown"`` with standard-library frames only (a garbage collection that struck there, the
    loop's own I/O). Without a dispatch frame to stop at (uvloop), the program's entry point counts as the
    application's: blaming the handler stays the default."""
    ours = False
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<"):
            # Generated code ("<string>": a dataclass's __init__, a namedtuple's __new__) is its caller's: judged
            # by the frames below it. Taken for the application's, it blamed handlers for stalls in backfill.
            frame = frame.f_back
            continue
        path = str(Path(name).resolve()) if os.path.isabs(name) else name
        if path == _DISPATCH_FILE:
            break
        if path.startswith(_OURS_DIRS):
            ours = True
        elif not path.startswith(_STDLIB_DIRS) or "-packages" + os.sep in path:
            return HANDLER
        frame = frame.f_back
    return BACKFILL if ours else UNKNOWN


class LoopMonitor:
    def __init__(self, threshold: float, *, events: Events, worker_id: str) -> None:
        self._threshold = threshold
        self._events = events
        self._worker_id = worker_id
        self._last_tick = time.monotonic()
        self._stopped = threading.Event()

    def _emit_blocked(self, seconds: float, stack: str, whose: str) -> None:
        self._events.emit("loop:blocked", worker_id=self._worker_id, seconds=seconds, stack=stack, culprit=whose)

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
        reported: str | None = None  # whose code the report of the current stall named, if one was made
        while not self._stopped.wait(self._threshold / 2):
            stalled_for = time.monotonic() - self._last_tick
            if stalled_for < self._threshold:
                reported = None
                continue
            if reported is not None and reported != UNKNOWN:
                continue
            frame = sys._current_frames().get(loop_thread)
            whose = culprit(frame)
            if reported is not None and whose == UNKNOWN:
                continue
            # One report a stall, or two: a stall first caught in the standard library (the loop reading a large
            # reply, a garbage collection) is looked at again while it lasts, and reported once more when it
            # turns out to be someone's code: one loop turn may read a reply and then decode it.
            reported = whose
            stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else "(stack unavailable)"
            logger.error(
                "worker %s: the event loop has been blocked for %.1fs%s Stack:\n%s",
                self._worker_id,
                stalled_for,
                _WHAT_TO_DO[whose],
                stack,
            )
            # Delivered when the loop runs again; listeners must not run on this thread.
            try:
                loop.call_soon_threadsafe(self._emit_blocked, stalled_for, stack, whose)
            except RuntimeError:  # the loop closed meanwhile
                return
