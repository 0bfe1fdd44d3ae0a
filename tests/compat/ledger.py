"""The ledger both runners write to, and backfill tasks that behave like ``node/worker.mjs``'s.

Each attempt of a ``record`` job inserts one row when it starts and stamps ``ended_at`` when it ends, in
statements of their own, so the ledger shows what ran, where, how often and when. Both runners take
the time from the database's ``clock_timestamp()``, so Node's and backfill's intervals are comparable.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from backfill.core.run.context import JobContext
from backfill.core.tasks import TaskRegistry

LEDGER_DDL = """
    create table public.compat_ledger (
      seq bigint generated always as identity primary key,
      job_id bigint not null,
      runner text not null check (runner in ('node', 'backfill')),
      task text not null,
      payload jsonb not null,
      attempt int not null,
      job_queue_id int,
      job_key text,
      started_at timestamptz not null,
      ended_at timestamptz
    )
"""

_START = """
    insert into public.compat_ledger (job_id, runner, task, payload, attempt, job_queue_id, job_key, started_at)
    values ($1::bigint, 'backfill', $2::text, $3::jsonb, $4::int, $5::int, $6::text, clock_timestamp())
    returning seq
"""
_END = "update public.compat_ledger set ended_at = clock_timestamp() where seq = $1::bigint"


@dataclass(frozen=True)
class LedgerRow:
    seq: int
    job_id: int
    runner: str
    task: str
    payload: Any
    attempt: int
    job_queue_id: int | None
    job_key: str | None
    started_at: datetime
    ended_at: datetime | None


async def create_ledger(connection: asyncpg.Connection[Any]) -> None:
    await connection.execute(LEDGER_DDL)


async def read_ledger(connection: asyncpg.Connection[Any]) -> list[LedgerRow]:
    rows = await connection.fetch(
        "select seq, job_id, runner, task, payload::text as payload, attempt, job_queue_id, job_key, started_at,"
        " ended_at from public.compat_ledger order by seq"
    )
    return [LedgerRow(**{**dict(row), "payload": json.loads(row["payload"])}) for row in rows]


def backfill_tasks() -> TaskRegistry:
    """``record`` and ``fail``, doing what the tasks of the same names in ``node/worker.mjs`` do."""
    registry = TaskRegistry()

    @registry.task("record")
    async def record(payload: Any, ctx: JobContext) -> None:
        job = ctx.job
        seq = await ctx.pool.fetchval(
            _START, job.id, job.task_identifier, json.dumps(payload), job.attempts, job.job_queue_id, job.key
        )
        if isinstance(payload, dict) and isinstance(payload.get("sleep_ms"), int):
            await asyncio.sleep(payload["sleep_ms"] / 1000)  # the job's own duration, not a wait in the test
        await ctx.pool.execute(_END, seq)

    @registry.task("fail")
    async def fail(payload: Any) -> None:
        raise Exception("boom")  # the Python twin of Node's `throw new Error("boom")`

    return registry


def overlapping(rows: Sequence[LedgerRow]) -> list[tuple[LedgerRow, LedgerRow]]:
    """Consecutive runs (by start time) where the later one started before the earlier one ended."""
    ordered = sorted(rows, key=lambda row: row.started_at)
    return [
        (earlier, later)
        for earlier, later in itertools.pairwise(ordered)
        if earlier.ended_at is None or later.started_at < earlier.ended_at
    ]
