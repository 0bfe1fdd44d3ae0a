"""``run_once`` returns only when nothing is runnable: an empty claim is not proof of that, because a fetch
skips what another fetch has row-locked for the length of its statement (it locks every available named queue),
and a lane's job may unlock a named queue whose next job belongs to another lane."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backfill.client.async_client import BackfillClient
from backfill.core.enqueue import add_job
from backfill.core.events import Events
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.integration.worker_support.helpers import fast_options, job_count
from tests.support.waiting import wait_for

QUEUES = "graphile_worker._private_job_queues"


async def test_run_once_waits_out_a_row_lock_on_a_named_queue_instead_of_stopping(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[int] = []
    registry = TaskRegistry()

    @registry.task("once.serial")
    async def serial(payload: dict[str, int]) -> None:
        ran.append(payload["n"])

    await add_job(conn, "once.serial", {"n": 1}, queue_name="customer:42")
    # What a concurrent fetch does to the queue row for the length of its statement, here held longer.
    blocker = await asyncpg.connect(database_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute(f"select id from {QUEUES} where queue_name = 'customer:42' for update")
        events = Events()
        empty_claims: list[object] = []
        events.on("worker:getJob:empty", empty_claims.append)
        worker = Worker(pool, tasks=registry, options=fast_options(), events=events)
        once = asyncio.create_task(worker.run_once())

        # An empty claim, the results written, a second empty claim: where run_once used to conclude "nothing
        # left". A third one shows it looked again instead.
        async def returned_or_looked_again() -> bool:
            return once.done() or len(empty_claims) >= 3

        await wait_for(returned_or_looked_again, timeout=10)
        assert not once.done(), "run_once returned while a job was runnable"
        await transaction.rollback()
        summary = await asyncio.wait_for(once, 10)
    finally:
        await blocker.close()
    assert ran == [1]
    assert summary.succeeded == 1
    assert await job_count(conn) == 0


async def test_run_once_stops_when_only_jobs_of_a_queue_locked_elsewhere_remain(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # The other side of the check: a queue locked by another worker (running its job) is not runnable now, so
    # run_once must not wait for it.
    registry = TaskRegistry()

    @registry.task("once.serial")
    async def serial(payload: Any) -> None:
        return None

    await add_job(conn, "once.serial", {}, queue_name="busy")
    await conn.execute(f"update {QUEUES} set locked_by = 'someone-else', locked_at = now() where queue_name = 'busy'")
    summary = await asyncio.wait_for(Worker(pool, tasks=registry, options=fast_options()).run_once(), 10)
    assert summary.processed == 0
    assert await job_count(conn) == 1


async def test_runner_run_once_runs_a_queue_s_jobs_of_both_lanes(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # One named queue holds a Fast job and a Bulk job. Whichever lane claims its job first locks the queue; the
    # other lane finds nothing runnable and finishes. The queue frees up only after that.
    order: list[str] = []
    registry = TaskRegistry()

    @registry.task("once.step")
    async def step(payload: dict[str, str]) -> None:
        await asyncio.sleep(0.3)  # long enough that the other lane has given up before the queue frees
        order.append(payload["lane"])

    settings = BackfillSettings.load(env_file=None, database_url=database_url, shutdown_grace_seconds=5.0)
    client = BackfillClient(pool)
    await client.enqueue_fast("once.step", {"lane": "fast"}, queue="customer:7")
    await client.enqueue_bulk("once.step", {"lane": "bulk"}, queue="customer:7")
    summary = await asyncio.wait_for(WorkerRunner(settings, tasks=registry).run_once(), 30)
    assert sorted(order) == ["bulk", "fast"]
    assert summary.succeeded == 2
    assert await job_count(conn) == 0
