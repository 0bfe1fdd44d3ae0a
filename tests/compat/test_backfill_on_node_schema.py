"""Proof 3: backfill starts on a schema Node installed, without migrating, and runs Node's jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from backfill.core import Worker, WorkerOptions
from backfill.core.migrations.graphile import migrate
from backfill.core.schema import SchemaName
from tests.compat.catalog import read_migration_timestamps
from tests.compat.conftest import CreateDatabase
from tests.compat.ledger import backfill_tasks, create_ledger, read_ledger
from tests.compat.nodejs import NodeJob, NodeRunner
from tests.compat.payloads import RICH_PAYLOAD

pytestmark = pytest.mark.compat


@pytest.mark.parametrize("schema", [None, 'Weird "Schema"'], ids=["default", "quoted"])
async def test_backfill_runs_jobs_node_enqueued(
    create_database: CreateDatabase, node: NodeRunner, schema: str | None
) -> None:
    dsn = await create_database()
    name = schema or "graphile_worker"
    await node.schema_only(dsn, schema=schema)
    connection = await asyncpg.connect(dsn)
    try:
        stamps = await read_migration_timestamps(connection, name)
        report = await migrate(connection, schema)
        assert (report.from_revision, report.applied) == (20, ())
        assert await read_migration_timestamps(connection, name) == stamps

        await create_ledger(connection)
        future = datetime.now(UTC) + timedelta(hours=1)
        ids = await node.enqueue(
            dsn,
            [
                NodeJob("record", RICH_PAYLOAD, priority=5),
                NodeJob("record", {"name": "b"}, priority=-3, via_quick_add_job=True),
                NodeJob("record", {"name": "c"}),
                NodeJob("record", {"name": "future"}, priority=-100, run_at=future),
                NodeJob("record", {"name": "keyed", "v": 1}, priority=1, job_key="k"),
                NodeJob("record", {"name": "keyed", "v": 2}, priority=2, job_key="k", job_key_mode="replace"),
                NodeJob("record", {"name": "flagged"}, priority=-50, flags=["skip-me"]),
                *(NodeJob("record", {"name": f"q{i}"}, priority=20, queue_name="serial") for i in range(3)),
            ],
            schema=schema,
        )
        rich_id, _, _, future_id, keyed_id, replaced_id, flagged_id, *queued_ids = ids

        # One slot, so the ledger's order is the order in which backfill took the jobs.
        worker = Worker(
            dsn,
            tasks=backfill_tasks(),
            options=WorkerOptions(schema=schema, concurrency=1, forbidden_flags=("skip-me",)),
        )
        summary = await worker.run_once()

        ledger = await read_ledger(connection)
        left = await connection.fetch(
            f"select id, attempts, locked_at from {SchemaName(name).qualify('_private_jobs')} order by id"
        )
    finally:
        await connection.close()

    assert [row.payload["name"] for row in ledger] == ["b", "c", "keyed", "rich", "q0", "q1", "q2"]
    assert {row.runner for row in ledger} == {"backfill"}
    assert (summary.succeeded, summary.failed) == (7, 0)
    assert next(row.payload for row in ledger if row.job_id == rich_id) == RICH_PAYLOAD
    keyed = next(row for row in ledger if row.payload["name"] == "keyed")
    assert keyed_id == replaced_id == keyed.job_id
    assert (keyed.payload, keyed.job_key) == ({"name": "keyed", "v": 2}, "k")
    assert [row.job_id for row in ledger if row.payload["name"].startswith("q")] == queued_ids
    # Not yet due, and forbidden to this worker: both untouched.
    assert [(row["id"], row["attempts"], row["locked_at"]) for row in left] == [
        (future_id, 0, None),
        (flagged_id, 0, None),
    ]
