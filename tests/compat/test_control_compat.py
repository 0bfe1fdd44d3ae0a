"""The operator controls with a Node graphile-worker on the same database: what docs/how-to/operator-controls.md
says a Node worker does with them. Pauses are backfill's alone (Node runs paused work); a queued job cancelled
from backfill is gone for Node too; a job a Node worker runs is refused, left to Node, and completes normally.
"""

from __future__ import annotations

import asyncpg
import pytest

from backfill.control import CancelOutcome, cancel_jobs, pause
from backfill.core import SchemaName, add_job
from backfill.migrations import migrate_all
from tests.compat.ledger import create_ledger, read_ledger
from tests.compat.nodejs import NodeRunner
from tests.support.waiting import wait_for

pytestmark = pytest.mark.compat

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"


async def test_node_runs_paused_work_and_never_sees_a_cancelled_job(database_url: str, node: NodeRunner) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await migrate_all(connection, SCHEMA)
        await create_ledger(connection)
        await pause(connection, SCHEMA, task="record", by="test")
        paused = await add_job(connection, "record", {"n": 1})
        cancelled = await add_job(connection, "record", {"n": 2})
        [answer] = await cancel_jobs(connection, SCHEMA, [cancelled.id], by="test")
        assert answer.outcome is CancelOutcome.CANCELLED

        await node.run_once(database_url)  # Node reads neither table: it runs the paused job

        assert [(row.job_id, row.runner) for row in await read_ledger(connection)] == [(paused.id, "node")]
        assert await connection.fetchval(f"select count(*) from {JOBS}") == 0
    finally:
        await connection.close()


async def test_a_job_a_node_worker_runs_is_refused_and_completes_under_node(
    database_url: str, node: NodeRunner
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await migrate_all(connection, SCHEMA)
        await create_ledger(connection)
        async with node.worker(database_url, concurrency=1):
            job = await add_job(connection, "record", {"n": 1, "sleep_ms": 1500})
            await wait_for(
                lambda: connection.fetchval("select count(*) = 1 from public.compat_ledger where job_id = $1", job.id),
                timeout=20,
            )
            [answer] = await cancel_jobs(connection, SCHEMA, [job.id], by="test")
            assert answer.outcome is CancelOutcome.REFUSED and "not a backfill worker" in answer.detail
            await wait_for(
                lambda: connection.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job.id), timeout=20
            )
        [row] = await read_ledger(connection)
        assert row.ended_at is not None  # Node ran it to the end
        assert await connection.fetchval("select count(*) from graphile_worker.backfill_cancellations") == 0
    finally:
        await connection.close()
