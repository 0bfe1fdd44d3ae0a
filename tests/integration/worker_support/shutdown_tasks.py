"""Tasks for the shutdown and start-up tests of runner processes (loaded through BACKFILL_TASK_MODULES).

``shutdown.sleep`` writes a ledger row when it starts and one when it ends (in the test's own table
``shutdown_ledger``), so a test can tell a job that finished from one that was interrupted, and count the
attempts that really ran.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import backfill

LEDGER_DDL = """
    create table if not exists shutdown_ledger (
      job_id bigint not null,
      attempt int not null,
      event text not null,
      pid int not null,
      at timestamptz not null default clock_timestamp()
    )
"""


@backfill.task("shutdown.sleep")
async def sleep(payload: dict[str, Any], ctx: backfill.JobContext) -> None:
    await _note(ctx, "start")
    await asyncio.sleep(float(payload["seconds"]))
    await _note(ctx, "end")


@backfill.task("shutdown.quick")
async def quick(payload: Any) -> None:
    return None


async def _note(ctx: backfill.JobContext, event: str) -> None:
    await ctx.pool.execute(
        "insert into shutdown_ledger (job_id, attempt, event, pid) values ($1, $2, $3, $4)",
        ctx.job.id,
        ctx.attempt,
        event,
        os.getpid(),
    )
