"""Waiting for the first of several ``asyncio.Event`` s, shared by the worker's parts."""

from __future__ import annotations

import asyncio
import contextlib


async def until_any(*events: asyncio.Event, within: float | None = None) -> None:
    """Until one of ``events`` is set (at once if one is), or ``within`` seconds have passed."""
    if any(event.is_set() for event in events):
        return
    if len(events) == 1:  # the fetch loop's wait between polls: no task to create
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(events[0].wait(), within)
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
