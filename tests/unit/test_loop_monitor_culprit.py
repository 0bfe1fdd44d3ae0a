"""Whose code a stalled loop callback was running: generated code (a dataclass's ``__init__``, anything compiled
from a string) belongs to whoever called it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from backfill.core.events import Event, Events
from backfill.core.run.loop_monitor import BACKFILL, HANDLER, culprit


def _generated(call: Callable[[], None]) -> Callable[[Event], None]:
    """A listener whose code was compiled from a string, as dataclasses compile the ``__init__`` they write."""
    namespace: dict[str, Any] = {"call": call}
    exec(compile("def listener(event):\n    call()\n", "<string>", "exec"), namespace)
    listener: Callable[[Event], None] = namespace["listener"]
    return listener


async def _culprit_seen_by(listener_of: Callable[[Callable[[], None]], Callable[[Event], None]]) -> str:
    """Emit an event straight from the loop's dispatch (backfill's frame under it) and judge the listener's frame."""
    seen: list[str] = []
    events = Events()
    events.on("stop", listener_of(lambda: seen.append(culprit(sys._getframe(1)))))
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_soon(events.emit, "stop")  # no frame of this file between the dispatch and Events.emit
    loop.call_soon(done.set)  # callbacks run in order: after the emit
    await done.wait()
    [whose] = seen
    return whose


async def test_generated_code_called_by_backfill_is_backfills() -> None:
    # The listener's frame is "<string>"; the frame under it is Events.emit. Before, "<string>" (not a path under
    # backfill or the standard library) was taken for the application's code and the handler was blamed for a
    # stall in, say, a dataclass __init__ that the completer called.
    assert await _culprit_seen_by(_generated) == BACKFILL


async def test_code_of_the_application_is_the_handlers() -> None:
    def plain(call: Callable[[], None]) -> Callable[[Event], None]:
        return lambda event: call()  # this test file: the application's code

    assert await _culprit_seen_by(plain) == HANDLER
