"""Proof 1: backfill's migrator builds the same catalog as graphile-worker@0.18.0 does."""

from __future__ import annotations

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from tests.compat.catalog import CatalogSnapshot, take_snapshot
from tests.compat.conftest import CreateDatabase
from tests.compat.nodejs import NodeRunner

pytestmark = pytest.mark.compat

# None is Node's and backfill's default (graphile_worker); the others must be quoted everywhere.
SCHEMAS = [None, "gw-test", 'Weird "Schema"']


async def _snapshot(dsn: str, schema: str) -> CatalogSnapshot:
    connection = await asyncpg.connect(dsn)
    try:
        return await take_snapshot(connection, schema)
    finally:
        await connection.close()


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default", "dashed", "quoted"])
async def test_backfill_and_node_install_the_same_catalog(
    create_database: CreateDatabase, node: NodeRunner, schema: str | None
) -> None:
    backfill_dsn, node_dsn = await create_database(), await create_database()
    connection = await asyncpg.connect(backfill_dsn)
    try:
        await migrate(connection, schema)
    finally:
        await connection.close()
    await node.schema_only(node_dsn, schema=schema)

    name = schema or "graphile_worker"
    ours, theirs = await _snapshot(backfill_dsn, name), await _snapshot(node_dsn, name)

    assert ours.differences(theirs) == [], "\n".join(ours.differences(theirs))
    # An empty snapshot on both sides would compare equal too: make sure the objects are really there.
    assert ours.migrations == tuple((revision, revision in {1, 3, 11, 13, 14, 16, 19}) for revision in range(1, 21))
    assert {table for table, enabled, _forced in ours.sections["row_level_security"] if enabled} == {
        "_private_job_queues",
        "_private_jobs",
        "_private_known_crontabs",
        "_private_tasks",
    }
    assert {row[0] for row in ours.sections["functions"]} >= {
        "add_job",
        "add_jobs",
        "complete_jobs",
        "force_unlock_workers",
        "permanently_fail_jobs",
        "remove_job",
        "reschedule_jobs",
    }


async def test_snapshot_sees_a_changed_signature(create_database: CreateDatabase, node: NodeRunner) -> None:
    """The comparison above can fail: one changed default is reported as a difference."""
    left, right = await create_database(), await create_database()
    await node.schema_only(left)
    await node.schema_only(right)
    connection = await asyncpg.connect(right)
    try:
        await connection.execute(
            "alter table graphile_worker._private_jobs alter column max_attempts set default 5;"
            "alter function graphile_worker.remove_job(text) stable"
        )
    finally:
        await connection.close()

    differences = (await _snapshot(left, "graphile_worker")).differences(await _snapshot(right, "graphile_worker"))

    assert any(line.startswith("columns:") and "max_attempts" in line for line in differences), differences
    assert any(line.startswith("functions:") and "remove_job" in line for line in differences), differences
