"""Task defaults reach jobs enqueued by processes that never imported the task (through the catalog)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.catalog import migrate_task_catalog, publish_task_defaults
from backfill.tasks.defaults import TASK_DEFAULTS, task

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"


@pytest.fixture
def worker_side_task() -> Iterator[TaskRegistry]:
    """A task declared with defaults, as the worker's code base does; the test then forgets the defaults
    in this process, as a service that enqueues by name without importing that code would not have them."""
    registry = TaskRegistry()

    @task("catalog.report", registry=registry, priority=7, lane="reports", queue="reports", retry_policy="fast")
    async def report(payload: Any) -> None:
        return None

    yield registry
    TASK_DEFAULTS.pop("catalog.report", None)


async def _row(pool: asyncpg.Pool[Any], job_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(
        f"select j.priority, j.max_attempts, j.flags::text as flags, q.queue_name from {JOBS} j"
        " left join graphile_worker._private_job_queues q on q.id = j.job_queue_id where j.id = $1",
        job_id,
    )
    assert row is not None
    return row


async def test_published_defaults_apply_to_a_task_this_process_never_imported(
    database_url: str, pool: asyncpg.Pool[Any], worker_side_task: TaskRegistry
) -> None:
    await migrate_task_catalog(pool, SCHEMA)
    await publish_task_defaults(pool, SCHEMA, worker_side_task.identifiers)
    TASK_DEFAULTS.pop("catalog.report")  # from here on, this process is the web service

    client = BackfillClient(pool)
    job = await client.enqueue("catalog.report", {})
    [many] = await client.enqueue_many([Enqueue("catalog.report", {}, priority=-1)])

    row = await _row(pool, job.id)
    assert (row["priority"], row["max_attempts"], row["queue_name"]) == (7, 3, "reports")
    assert set(json.loads(row["flags"])) == {"backfill:retry=fast", "backfill:lane", "backfill:lane=reports"}
    assert (await _row(pool, many.id))["priority"] == -1  # the caller's argument still wins


async def test_a_runner_publishes_the_defaults_of_the_tasks_it_runs(
    database_url: str, pool: asyncpg.Pool[Any], worker_side_task: TaskRegistry
) -> None:
    settings = BackfillSettings.load(env_file=None, database_url=database_url)
    await WorkerRunner(settings, tasks=worker_side_task).run_once()
    row = await pool.fetchrow(
        "select priority, lane, queue_name, retry_flag, max_attempts from graphile_worker.backfill_task_defaults"
        " where identifier = 'catalog.report'"
    )
    assert row is not None
    assert tuple(row) == (7, "reports", "reports", "backfill:retry=fast", 3)


async def test_without_the_catalog_table_enqueue_still_works_inside_a_transaction(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    # An old schema (no catalog): the lookup fails on the client's own pool, never on the caller's
    # connection, so the caller's transaction survives and the job gets the client's defaults.
    client = BackfillClient(pool)
    async with pool.acquire() as connection, connection.transaction():
        job = await client.enqueue("catalog.unknown", {}, connection=connection)
        assert await connection.fetchval("select 1") == 1
    row = await _row(pool, job.id)
    assert (row["priority"], row["max_attempts"]) == (0, 8)
