"""A worker that learns it was declared dead starts none of the jobs waiting in its local queue: the sweeper
released their claims, so they may already be running elsewhere (reliability rule 9)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.events import Events
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.core.upkeep.sweeper import sweep
from tests.integration.worker_support.helpers import JOBS_TABLE, fast_options, job_count
from tests.support.waiting import wait_for

WORKERS = "graphile_worker.backfill_workers"


async def test_a_worker_declared_dead_drops_its_unstarted_claims(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    release_hold = asyncio.Event()
    hold_started = asyncio.Event()
    # For each start of a queued job: was its claim still this worker's when its handler started?
    starts: list[tuple[int, bool]] = []
    registry = TaskRegistry()

    @registry.task("forfeit.warm")
    async def warm(payload: Any) -> None:
        return None

    @registry.task("forfeit.hold")
    async def hold(payload: Any) -> None:
        hold_started.set()
        await release_hold.wait()

    @registry.task("forfeit.queued")
    async def queued(payload: Any, ctx: JobContext) -> None:
        row = await ctx.pool.fetchrow(f"select locked_by, locked_at from {JOBS_TABLE} where id = $1", ctx.job.id)
        assert row is not None
        starts.append((ctx.job.id, row["locked_by"] == ctx.worker_id and row["locked_at"] == ctx.job.locked_at))

    # Quick jobs first, so the worker measures a high throughput and then claims ahead of its one slot: the
    # queued jobs wait claimed in its local queue while the hold job occupies the slot.
    for _ in range(150):
        await add_job(conn, "forfeit.warm", None, priority=-10)
    await add_job(conn, "forfeit.hold", None, priority=0)
    queued_ids = [(await add_job(conn, "forfeit.queued", None, priority=1)).id for _ in range(3)]

    events = Events()
    declared_dead = asyncio.Event()
    events.on("heartbeat:declaredDead", lambda _event: declared_dead.set())
    options = fast_options(concurrency=1, lookahead=1000, local_queue_size=5, heartbeat_interval=0.2)
    worker = Worker(pool, tasks=registry, options=options, events=events)
    async with worker:
        await asyncio.wait_for(hold_started.wait(), 20)

        async def queued_jobs_claimed() -> bool:
            locked = await conn.fetchval(
                f"select count(*) from {JOBS_TABLE} where id = any($1::bigint[]) and locked_by = $2",
                queued_ids,
                worker.worker_id,
            )
            return bool(locked == len(queued_ids))

        await wait_for(queued_jobs_claimed, timeout=20, message="the queued jobs were never claimed ahead")
        assert starts == []
        # What a sweeper does to a worker whose heartbeat stopped: its claims are released.
        async with conn.transaction():
            await conn.execute(
                f"update {WORKERS} set last_heartbeat_at = now() - interval '1 hour' where worker_id = $1",
                worker.worker_id,
            )
            report = await sweep(conn, SchemaName("graphile_worker"))
        assert set(queued_ids) <= set(report.released_jobs)
        await asyncio.wait_for(declared_dead.wait(), 10)
        release_hold.set()

        async def all_done() -> bool:
            return await job_count(conn) == 0

        await wait_for(all_done, timeout=20)
    # Each queued job ran (claimed afresh), and never on the claim the sweeper had taken away.
    assert sorted({job_id for job_id, _ in starts}) == sorted(queued_ids)
    assert all(held for _, held in starts), starts
    # At least the queued jobs; also any job the worker claimed afresh in the moments before its heartbeat
    # told it (those claims were its own, but it cannot tell them apart, so it drops and releases them too).
    assert worker.summary.forfeited >= len(queued_ids)
