"""Connections die: a worker whose every connection is terminated again and again keeps running.

Kills land at arbitrary points (mid-fetch, mid-completion, while a pooled connection is being handed
out), which is the point: whatever asyncpg raises from a dying connection must be retried, never allowed
to kill a side task, because a dead fetcher or listener stops the whole worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, running, wait_listening
from tests.support.waiting import wait_for_event

KILL_ROUNDS = 30


@pytest.mark.parametrize("source", ["dsn", "pool"])
async def test_the_worker_survives_its_connections_being_killed_repeatedly(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], source: str
) -> None:
    events = {"after-the-storm": asyncio.Event()}
    registry = TaskRegistry()

    @registry.task("signal")
    async def signal(payload: dict[str, str]) -> None:
        events.setdefault(payload["name"], asyncio.Event()).set()

    database_source: str | asyncpg.Pool[Any] = database_url if source == "dsn" else pool
    # A very short poll keeps the fetcher querying all the time, so kills often hit it mid-statement.
    worker = Worker(database_source, tasks=registry, options=fast_options(poll_interval=0.01))
    async with running(worker) as run:
        await wait_listening(conn)
        for round_number in range(KILL_ROUNDS):
            await add_job(conn, "signal", {"name": f"storm-{round_number}"})
            await conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where datname = current_database() and pid <> pg_backend_pid()"
            )
            # Yield so the worker meets the dead connections before the next round kills their successors.
            await asyncio.sleep(0)
            assert not run.done(), f"the worker stopped after kill round {round_number}"

        await add_job(conn, "signal", {"name": "after-the-storm"})
        await wait_for_event(events["after-the-storm"], timeout=10, message="a job enqueued after the kills")
        assert not run.done()
