"""Typos that strand jobs are reported: a lane no runner ever declared, and a new schema beside an existing one."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.lanes.catalog import declare_lanes
from backfill.lanes.lane import Lane
from backfill.migrations import migrate_all
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.catalog import publish_task_defaults
from tests.integration.worker_support.helpers import JOBS_TABLE

SCHEMA = SchemaName("graphile_worker")


async def test_a_runner_declares_its_custom_lanes(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    registry = TaskRegistry()

    @registry.task("lanes.noop")
    async def noop(payload: Any) -> None:
        return None

    settings = BackfillSettings.load(env_file=None, database_url=database_url, lanes="reports=2,exports=1")
    await WorkerRunner(settings, tasks=registry).run_once()
    rows = await pool.fetch("select name, concurrency from graphile_worker.backfill_lanes order by name")
    assert [(row["name"], row["concurrency"]) for row in rows] == [("exports", 1), ("reports", 2)]


async def test_enqueueing_into_a_lane_no_runner_declared_warns_once_and_still_enqueues(
    pool: asyncpg.Pool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    await migrate_all(pool, SCHEMA)
    client = BackfillClient(pool)
    # Before any runner has started against the schema, nothing is known: no warning.
    with caplog.at_level(logging.WARNING, logger="backfill.lanes"):
        await client.enqueue("monthly", {}, lane="reprots")
    assert [r for r in caplog.records if r.name == "backfill.lanes"] == []
    # What a runner does at start: publish its tasks' defaults and declare its lanes.
    await publish_task_defaults(pool, SCHEMA, ["monthly"])
    await declare_lanes(pool, SCHEMA, [Lane("reports", 2)])
    client = BackfillClient(pool)  # a fresh client: the one above cached "nothing known" for 30 s

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "backfill.lanes" and r.levelno >= logging.WARNING]

    with caplog.at_level(logging.WARNING, logger="backfill.lanes"):
        await client.enqueue("monthly", {}, lane="reports")
        assert warnings() == []  # a declared lane: nothing to say
        typo = await client.enqueue("monthly", {}, lane="reprots")
        await client.enqueue("monthly", {}, lane="reprots")
        await client.enqueue_fast("monthly", {})
    assert len(warnings()) == 1, warnings()
    message = warnings()[0]
    assert "'reprots'" in message and "reports" in message
    assert await pool.fetchval(f"select count(*) from {JOBS_TABLE} where id = $1", typo.id) == 1


async def test_a_new_schema_beside_an_existing_queue_warns(
    conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The test database has graphile_worker installed; GRAPHILE_WORKER_SCHEMA=graphile_wroker would do this:
    with caplog.at_level(logging.WARNING, logger="backfill.migrate"):
        await migrate_all(conn, SchemaName("graphile_wroker"))
    warnings = [r.getMessage() for r in caplog.records if r.name == "backfill.migrate" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "graphile_wroker" in warnings[0] and "graphile_worker" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="backfill.migrate"):
        await migrate_all(conn, SCHEMA)  # an existing schema brought up to date: nothing new was created
        await migrate_all(conn, SchemaName("graphile_wroker"))
    assert [r for r in caplog.records if r.name == "backfill.migrate" and r.levelno == logging.WARNING] == []
