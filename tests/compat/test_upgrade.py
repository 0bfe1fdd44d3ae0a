"""backfill upgrades a schema that an older Node worker left at revision 18 or 19.

Two ways in: the real thing (graphile-worker@0.16.6 installs exactly revision 18 and 0.17.3 revision 19;
the toolchain carries both under aliases), and a simulation that can watch the details: 0.18.0 installs
revision 20, the rows of the later revisions are deleted, and ``add_job`` gets a body that refuses to run,
standing in for the revision-18 function that revision 20 replaces (revision 19 is a marker with no DDL).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.migrations.graphile import migrate
from tests.compat.catalog import read_migration_timestamps, take_snapshot
from tests.compat.conftest import CreateDatabase
from tests.compat.ledger import create_ledger, read_ledger
from tests.compat.nodejs import NodeRunner, node_connection_string
from tests.support.node import LEGACY_GRAPHILE_WORKERS
from tests.support.waiting import wait_for

pytestmark = pytest.mark.compat

_STALE_ADD_JOB = """
    create or replace function graphile_worker.add_job(
      identifier text, payload json default null, queue_name text default null,
      run_at timestamptz default null, max_attempts int default null, job_key text default null,
      priority int default null, flags text[] default null, job_key_mode text default 'replace'
    ) returns graphile_worker._private_jobs
    language plpgsql as $$ begin raise exception 'stale add_job from before revision 20'; end $$
"""


@pytest.mark.parametrize("left_at", [18, 19])
async def test_backfill_upgrades_what_node_left_at(
    create_database: CreateDatabase, node: NodeRunner, left_at: int
) -> None:
    dsn = await create_database()
    await node.schema_only(dsn)
    connection = await asyncpg.connect(dsn)
    listener = await asyncpg.connect(dsn)
    notices: list[dict[str, Any]] = []
    await listener.add_listener("worker:migrate", lambda *args: notices.append(json.loads(args[3])))
    try:
        reference = await take_snapshot(connection, "graphile_worker")
        stamps = await read_migration_timestamps(connection, "graphile_worker")
        await connection.execute("delete from graphile_worker.migrations where id > $1::int", left_at)
        await connection.execute(_STALE_ADD_JOB)

        report = await migrate(connection)

        expected = tuple(range(left_at + 1, 21))
        assert (report.from_revision, report.to_revision, report.applied) == (left_at, 20, expected)
        await wait_for(lambda: _settled(notices, len(expected)), timeout=5, message="worker:migrate notifications")
        assert notices == [{"migrationNumber": n, "breaking": n == 19} for n in expected]
        upgraded = await take_snapshot(connection, "graphile_worker")
        assert reference.differences(upgraded) == []
        new_stamps = await read_migration_timestamps(connection, "graphile_worker")
        assert {n: ts for n, ts in new_stamps.items() if n <= left_at} == {
            n: ts for n, ts in stamps.items() if n <= left_at
        }

        # Node 0.18 finds nothing to do on the upgraded schema and runs a job backfill adds with it.
        await node.schema_only(dsn)
        assert await read_migration_timestamps(connection, "graphile_worker") == new_stamps
        await create_ledger(connection)
        job = await add_job(connection, "record", {"upgraded_from": left_at})
        await node.run_once(dsn)
        assert [(row.job_id, row.payload) for row in await read_ledger(connection)] == [
            (job.id, {"upgraded_from": left_at})
        ]
    finally:
        await listener.close()
        await connection.close()


async def _settled(notices: list[dict[str, Any]], count: int) -> bool:
    return len(notices) >= count


@pytest.mark.parametrize(("version", "revision"), sorted(LEGACY_GRAPHILE_WORKERS.items()))
async def test_backfill_upgrades_a_real_older_node_install(
    create_database: CreateDatabase, node: NodeRunner, version: str, revision: int
) -> None:
    legacy = await create_database()
    reference = await create_database()
    argv = node.toolchain.legacy_graphile_worker(version, "-c", node_connection_string(legacy), "--schema-only")
    await node.run_argv(argv)
    await node.schema_only(reference)
    connection = await asyncpg.connect(legacy)
    reference_connection = await asyncpg.connect(reference)
    try:
        assert await connection.fetchval("select max(id) from graphile_worker.migrations") == revision

        report = await migrate(connection)

        assert (report.from_revision, report.to_revision) == (revision, 20)
        assert report.applied == tuple(range(revision + 1, 21))
        expected = await take_snapshot(reference_connection, "graphile_worker")
        assert expected.differences(await take_snapshot(connection, "graphile_worker")) == []
        # The upgraded add_job is revision 20's: it works for backfill and for Node 0.18 alike.
        await create_ledger(connection)
        job = await add_job(connection, "record", {"from": version})
        await node.run_once(legacy)
        assert [(row.job_id, row.payload) for row in await read_ledger(connection)] == [(job.id, {"from": version})]
    finally:
        await connection.close()
        await reference_connection.close()
