"""A task row re-created under a new id (after GC_TASK_IDENTIFIERS cleanup) is still served."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, running
from tests.support.waiting import wait_for_event


async def test_a_job_of_a_task_recreated_under_a_new_id_runs(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    ran: dict[str, asyncio.Event] = {"before": asyncio.Event(), "after": asyncio.Event()}
    registry = TaskRegistry()

    @registry.task("greet")
    async def greet(payload: dict[str, str]) -> None:
        ran[payload["when"]].set()

    worker = Worker(database_url, tasks=registry, options=fast_options())
    async with running(worker):
        await add_job(conn, "greet", {"when": "before"})
        await wait_for_event(ran["before"], timeout=10, message="the job enqueued before the cleanup")
        old_id = await conn.fetchval("select id from graphile_worker._private_tasks where identifier = 'greet'")
        # What Graphile's GC_TASK_IDENTIFIERS cleanup does to a task without jobs.
        await conn.execute("delete from graphile_worker._private_tasks where identifier = 'greet'")

        job = await add_job(conn, "greet", {"when": "after"})

        assert job.task_id != old_id
        await wait_for_event(ran["after"], timeout=10, message="the job of the re-created task")
