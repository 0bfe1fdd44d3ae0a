"""Proof 4: a Node pool and a backfill worker share one database and one task list without a fault.

Both start before any job exists and the jobs arrive in batches while they run, so each batch is
contended: every job must run exactly once, the jobs of each named queue one at a time, and the
tables must end empty and unlocked.
"""

from __future__ import annotations

import time
from collections import Counter

import asyncpg
import pytest

from backfill.core import JobSpec, Worker, WorkerOptions, add_jobs
from tests.compat.ledger import LedgerRow, backfill_tasks, create_ledger, overlapping, read_ledger
from tests.compat.nodejs import NodeRunner
from tests.support.waiting import wait_for

pytestmark = pytest.mark.compat

JOBS = 3000
BATCH = 500
QUEUES = 6
# One job in five goes to a named queue: 100 per queue, enough for overlaps to show if queues leaked.
QUEUED_EVERY = 5


def _spec(n: int) -> JobSpec:
    queue = f"serial-{(n // QUEUED_EVERY) % QUEUES}" if n % QUEUED_EVERY == 0 else None
    return JobSpec("record", {"n": n, "queue": queue}, queue_name=queue)


async def test_node_and_backfill_share_the_work_exactly_once(database_url: str, node: NodeRunner) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await create_ledger(connection)
        worker = Worker(
            database_url,
            tasks=backfill_tasks(),
            options=WorkerOptions(concurrency=8, poll_interval=0.1, max_pool_size=10),
        )

        async def all_run() -> bool:
            done = await connection.fetchrow(
                "select count(*) as runs, count(ended_at) as ended,"
                " (select count(*) from graphile_worker._private_jobs) as waiting from public.compat_ledger"
            )
            assert done is not None
            return bool(done["runs"] >= JOBS and done["ended"] == done["runs"] and done["waiting"] == 0)

        started = time.monotonic()
        async with node.worker(database_url, concurrency=8, poll_interval_ms=100), worker:
            for first in range(0, JOBS, BATCH):
                await add_jobs(connection, [_spec(n) for n in range(first, first + BATCH)])
            await wait_for(all_run, timeout=90, interval=0.2, message=f"{JOBS} jobs to run")
        elapsed = time.monotonic() - started

        ledger = await read_ledger(connection)
        leftovers = await connection.fetchrow(
            "select (select count(*) from graphile_worker._private_jobs) as jobs,"
            " (select count(*) from graphile_worker._private_job_queues where locked_by is not null) as queues"
        )
    finally:
        await connection.close()

    runs = Counter(row.payload["n"] for row in ledger)
    assert sorted(runs) == list(range(JOBS)), "some jobs never ran"
    assert [n for n, count in runs.items() if count > 1] == [], "some jobs ran more than once"
    assert all(row.attempt == 1 for row in ledger)
    assert leftovers is not None and (leftovers["jobs"], leftovers["queues"]) == (0, 0)

    by_runner = Counter(row.runner for row in ledger)
    assert by_runner["node"] > 0 and by_runner["backfill"] > 0, by_runner
    assert _busy_at_the_same_time(ledger), "the two workers never ran jobs at the same time"

    queues: dict[str, list[LedgerRow]] = {}
    for row in ledger:
        if row.payload["queue"] is not None:
            queues.setdefault(row.payload["queue"], []).append(row)
    assert sorted(queues) == [f"serial-{q}" for q in range(QUEUES)]
    for name, rows in queues.items():
        assert overlapping(rows) == [], f"queue {name} ran two jobs at once"
        assert {row.runner for row in rows} == {"node", "backfill"}, f"queue {name} was not shared"
    print(f"\n{JOBS} jobs in {elapsed:.1f}s: {dict(by_runner)}")


def _busy_at_the_same_time(ledger: list[LedgerRow]) -> bool:
    """Whether some Node job and some backfill job were running at one instant."""
    spans = {
        runner: [(row.started_at, row.ended_at or row.started_at) for row in ledger if row.runner == runner]
        for runner in ("node", "backfill")
    }
    sample = spans["backfill"][:: max(1, len(spans["backfill"]) // 200)]  # keeps the pairwise check cheap
    return any(start < t_end and t_start < end for start, end in sample for t_start, t_end in spans["node"])
