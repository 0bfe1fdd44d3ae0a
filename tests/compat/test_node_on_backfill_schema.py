"""Proof 2: Node graphile-worker accepts a schema backfill installed and runs the jobs backfill enqueues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.migrations.graphile import migrate
from tests.compat.catalog import read_migration_timestamps, take_snapshot
from tests.compat.conftest import CreateDatabase
from tests.compat.ledger import create_ledger, overlapping, read_ledger
from tests.compat.nodejs import NodeRunner
from tests.compat.payloads import RICH_PAYLOAD
from tests.support.waiting import wait_for

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("schema", [None, "gw-test"], ids=["default", "dashed"])
async def test_node_schema_only_changes_nothing(
    create_database: CreateDatabase, node: NodeRunner, schema: str | None
) -> None:
    dsn = await create_database()
    name = schema or "graphile_worker"
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection, schema)
        before, stamps_before = await take_snapshot(connection, name), await read_migration_timestamps(connection, name)

        await node.schema_only(dsn, schema=schema)

        after, stamps_after = await take_snapshot(connection, name), await read_migration_timestamps(connection, name)
    finally:
        await connection.close()
    assert before.differences(after) == []
    assert stamps_after == stamps_before
    assert max(stamps_after) == 20


async def test_node_runs_backfill_jobs_by_priority_with_payload_run_at_and_key(
    database_url: str, node: NodeRunner
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await create_ledger(connection)
        rich = await add_job(connection, "record", RICH_PAYLOAD, priority=5)
        await add_job(connection, "record", {"name": "b"}, priority=-3)
        await add_job(connection, "record", {"name": "c"}, priority=0)
        await add_job(connection, "record", {"name": "d"}, priority=10)
        future = await add_job(
            connection, "record", {"name": "future"}, priority=-100, run_at=datetime.now(UTC) + timedelta(hours=1)
        )
        first = await add_job(connection, "record", {"name": "keyed", "v": 1}, priority=1, job_key="k")
        replaced = await add_job(connection, "record", {"name": "keyed", "v": 2}, priority=2, job_key="k")

        await node.run_once(database_url)

        ledger = await read_ledger(connection)
        left = await connection.fetch("select id, attempts, locked_at from graphile_worker._private_jobs")
    finally:
        await connection.close()

    assert [row.payload["name"] for row in ledger] == ["b", "c", "keyed", "rich", "d"]
    assert {row.runner for row in ledger} == {"node"}
    assert next(row.payload for row in ledger if row.job_id == rich.id) == RICH_PAYLOAD
    keyed = next(row for row in ledger if row.payload["name"] == "keyed")
    assert replaced.id == first.id == keyed.job_id
    assert (keyed.payload, keyed.job_key) == ({"name": "keyed", "v": 2}, "k")
    # The future job (which would have run first, by priority) is still waiting, never attempted.
    assert [(row["id"], row["attempts"], row["locked_at"]) for row in left] == [(future.id, 0, None)]


async def test_node_runs_a_backfill_named_queue_one_job_at_a_time_in_order(database_url: str, node: NodeRunner) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await create_ledger(connection)
        queued = [
            await add_job(connection, "record", {"name": f"q{i}", "sleep_ms": 40}, queue_name="serial")
            for i in range(6)
        ]
        for i in range(4):
            await add_job(connection, "record", {"name": f"free{i}", "sleep_ms": 150})

        async def all_done() -> bool:
            return bool(
                await connection.fetchval("select count(*) = 10 and count(ended_at) = 10 from public.compat_ledger")
            )

        async with node.worker(database_url, concurrency=4):
            await wait_for(all_done, timeout=20, message="the Node worker to run all 10 jobs")

        ledger = await read_ledger(connection)
        remaining = await connection.fetchval("select count(*) from graphile_worker._private_jobs")
        locked_queues = await connection.fetchval(
            "select count(*) from graphile_worker._private_job_queues where locked_by is not null"
        )
    finally:
        await connection.close()

    serial = [row for row in ledger if row.payload["name"].startswith("q")]
    assert [row.job_id for row in serial] == [job.id for job in queued]
    assert overlapping(serial) == []
    # The pool really did run jobs side by side, so the queue's jobs were kept apart by the queue.
    free = [row for row in ledger if row.payload["name"].startswith("free")]
    assert overlapping(free) != []
    assert (remaining, locked_queues) == (0, 0)
