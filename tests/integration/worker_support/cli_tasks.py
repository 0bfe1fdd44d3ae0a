"""Tasks for the CLI subprocess tests (``backfill worker --tasks tests.integration.worker_support.cli_tasks``).

Each handler writes to ``cli_ledger`` (created by the test) in statements of its own, so the test can see
what ran, and when a slow job started and finished, from outside the worker process.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from backfill import JobContext, task

_LEDGER_INSERT = "insert into cli_ledger (job_id, event, pid) values ($1, $2, $3)"


@task("cli_record")
async def cli_record(payload: dict[str, Any], ctx: JobContext) -> None:
    await ctx.pool.execute(_LEDGER_INSERT, ctx.job.id, "ran", os.getpid())


@task("cli_slow")
async def cli_slow(payload: dict[str, Any], ctx: JobContext) -> None:
    await ctx.pool.execute(_LEDGER_INSERT, ctx.job.id, "started", os.getpid())
    await asyncio.sleep(float(payload.get("seconds", 1.0)))
    await ctx.pool.execute(_LEDGER_INSERT, ctx.job.id, "finished", os.getpid())


@task("cli_sync_stuck")
def cli_sync_stuck(payload: dict[str, Any]) -> None:
    # A plain def runs in a thread, which cancellation cannot stop: it stands for a handler stuck in a C call.
    Path(payload["marker"]).write_text("started")
    time.sleep(float(payload["seconds"]))
