"""The rounds of QueueStatsCollector.run: ready jobs counted afresh every round, the count of scheduled ones reused
between its own rounds without showing a job both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core import add_job
from backfill.metrics import BackfillMetrics, QueueStatsCollector
from backfill.metrics.gauges import QueueSnapshot, WaitingJobs
from tests.integration.worker_support.helpers import JOBS_TABLE
from tests.support.waiting import wait_for


async def test_between_counts_a_round_moves_scheduled_jobs_that_came_due_to_ready(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    metrics = BackfillMetrics(lanes=["fast", "bulk"])
    # So small a share that, once counted, the scheduled jobs are not counted again during the test.
    collector = QueueStatsCollector(pool, None, metrics, interval=0.01, scheduled_count_share=1e-9)
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [await add_job(pool, "t", priority=0, queue_name="serial", run_at=later) for _ in range(3)]
    jobs += [await add_job(pool, "t", priority=-5, run_at=later) for _ in range(2)]

    async def snapshot_where(check: Callable[[QueueSnapshot], bool]) -> QueueSnapshot:
        async def found() -> QueueSnapshot | None:
            snapshot = metrics.queue_gauges.snapshot
            return snapshot if snapshot is not None and check(snapshot) else None

        return await wait_for(found, message="a round showing it")

    task = asyncio.create_task(collector.run())
    try:
        first = await snapshot_where(lambda snapshot: True)
        assert first.lanes["bulk"] == WaitingJobs(0, 3) and first.lanes["fast"] == WaitingJobs(0, 2)
        assert first.queues["serial"] == WaitingJobs(0, 3)

        # Two scheduled jobs come due, one new job is scheduled: the rounds see the first at once (the ready jobs
        # are read every round), and the second only at the next count. (Due in 0.2 s, after the count: a job
        # moved to a run_at before the count would be shown both ways until the next count.)
        ids = [jobs[0].id, jobs[3].id]
        await conn.execute(f"update {JOBS_TABLE} set run_at = now() + interval '0.2 seconds' where id = any($1)", ids)
        await add_job(pool, "t", priority=0, run_at=later)
        snapshot = await snapshot_where(lambda snapshot: snapshot.lanes["bulk"].ready == 1)
        assert (snapshot.lanes["bulk"].ready, snapshot.lanes["bulk"].scheduled) == (1, 2)
        assert (snapshot.lanes["fast"].ready, snapshot.lanes["fast"].scheduled) == (1, 1)
        assert (snapshot.queues["serial"].ready, snapshot.queues["serial"].scheduled) == (1, 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    counted = await collector.collect_once()  # counts everything afresh
    assert (counted.lanes["bulk"].ready, counted.lanes["bulk"].scheduled) == (1, 3)
    assert (counted.lanes["fast"].ready, counted.lanes["fast"].scheduled) == (1, 1)


async def test_run_counts_the_scheduled_jobs_every_round_while_that_is_cheap(
    pool: asyncpg.Pool[Any],
) -> None:
    metrics = BackfillMetrics(lanes=["fast", "bulk"])
    collector = QueueStatsCollector(pool, None, metrics, interval=0.01)
    task = asyncio.create_task(collector.run())
    try:
        await wait_for(lambda: _done(metrics.queue_gauges.snapshot is not None), message="a first round")
        await add_job(pool, "t", run_at=datetime.now(UTC) + timedelta(hours=1))

        async def scheduled() -> bool:
            snapshot = metrics.queue_gauges.snapshot
            return snapshot is not None and snapshot.lanes["bulk"].scheduled == 1

        # A count over an empty table takes a few milliseconds: the next is due within a second at most.
        await wait_for(scheduled, timeout=5.0, message="the new scheduled job counted")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _done(value: bool) -> bool:
    return value
