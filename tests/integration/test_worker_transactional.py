"""Transactional enqueue end to end: a running worker sees a job only once its transaction commits.

"Not run yet" is proven without sleeping: a marker job enqueued outside the transaction, with a lower
priority than the transactional one, runs first. The worker has therefore fetched at least once while
the transactional job existed uncommitted, and would have preferred it had it been visible.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_count, running, wait_listening
from tests.support.waiting import wait_for_event

PROMPTLY = 5.0


def event_registry(events: dict[str, asyncio.Event]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("signal")
    async def signal(payload: dict[str, str]) -> None:
        events.setdefault(payload["name"], asyncio.Event()).set()

    return registry


async def run_marker(pool: asyncpg.Pool[Any], events: dict[str, asyncio.Event], name: str) -> None:
    events[name] = asyncio.Event()
    await add_job(pool, "signal", {"name": name}, priority=100)
    await wait_for_event(events[name], timeout=PROMPTLY, message=f"marker {name}")


async def test_a_job_enqueued_in_a_transaction_runs_only_after_commit(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events: dict[str, asyncio.Event] = {"tx": asyncio.Event()}
    worker = Worker(database_url, tasks=event_registry(events), options=fast_options(concurrency=1))
    async with running(worker):
        # Started (tasks registered): otherwise the worker's start-up would wait on our transaction, which
        # registers the task too, and the marker would never run.
        await wait_listening(conn)
        transaction = conn.transaction()
        await transaction.start()
        try:
            await add_job(conn, "signal", {"name": "tx"}, priority=-100)
            await run_marker(pool, events, "before-commit")
            assert not events["tx"].is_set()
        finally:
            await transaction.commit()
        await wait_for_event(events["tx"], timeout=PROMPTLY, message="job after commit")
    assert await job_count(conn) == 0


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events: dict[str, asyncio.Event] = {"tx": asyncio.Event()}
    worker = Worker(database_url, tasks=event_registry(events), options=fast_options(concurrency=1))
    async with running(worker):
        # Started (tasks registered): otherwise the worker's start-up would wait on our transaction, which
        # registers the task too, and the marker would never run.
        await wait_listening(conn)
        transaction = conn.transaction()
        await transaction.start()
        try:
            await add_job(conn, "signal", {"name": "tx"}, priority=-100)
            await run_marker(pool, events, "before-rollback")
        finally:
            await transaction.rollback()
        # Fetched again after the rollback, and still nothing: the job never existed.
        await run_marker(pool, events, "after-rollback")
    assert not events["tx"].is_set()
    assert await job_count(conn) == 0
