"""Tasks for the control process tests (loaded through BACKFILL_TASK_MODULES): each leaves files in the directory
its payload names, so the test sees across processes when a handler started, finished or saw its cancellation
(time.time() written in each file)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import backfill
from backfill.core import JobContext


def _mark(payload: Any, event: str) -> None:
    Path(payload["dir"], f"{payload['name']}.{event}").write_text(f"{time.time()} {os.getpid()}")


@backfill.task("control.record")
async def record(payload: Any) -> None:
    _mark(payload, "started")
    _mark(payload, "finished")


@backfill.task("control.hang")
async def hang(payload: Any) -> None:
    _mark(payload, "started")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        _mark(payload, "cancelled")
        raise
    _mark(payload, "finished")


@backfill.task("control.hang_sync")
def hang_sync(payload: Any, ctx: JobContext) -> None:
    _mark(payload, "started")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if ctx.abort_signal.is_set():  # cooperative: a thread cannot be cancelled, it can look
            _mark(payload, "cancelled")
            return
        time.sleep(0.005)
    _mark(payload, "finished")
