"""Named queues stay serial and in order under concurrency, while unqueued jobs run side by side."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_count

QUEUES = ("alpha", "beta", "gamma")
JOBS_PER_QUEUE = 15
UNQUEUED = 8
# Unqueued jobs wait until this many of them run at once; a worker that serialised them would fail them.
MUST_OVERLAP = 3


@dataclass
class Span:
    queue: str | None
    seq: int
    start: float
    end: float = 0.0


async def test_named_queues_never_overlap_and_run_in_enqueue_order(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    spans: list[Span] = []
    unqueued_running = 0
    enough_overlap = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("queued")
    async def queued(payload: dict[str, Any]) -> None:
        span = Span(payload["queue"], payload["seq"], time.monotonic())
        spans.append(span)
        await asyncio.sleep(0.005)  # gives a second job of the same queue every chance to start meanwhile
        span.end = time.monotonic()

    @registry.task("unqueued")
    async def unqueued(payload: dict[str, Any]) -> None:
        nonlocal unqueued_running
        span = Span(None, payload["seq"], time.monotonic())
        spans.append(span)
        unqueued_running += 1
        if unqueued_running >= MUST_OVERLAP:
            enough_overlap.set()
        try:
            async with asyncio.timeout(5):
                await enough_overlap.wait()
        finally:
            unqueued_running -= 1
            span.end = time.monotonic()

    # Interleaved, one transaction each, so run_at (the enqueue time) orders every queue.
    for seq in range(JOBS_PER_QUEUE):
        for queue in QUEUES:
            await add_job(pool, "queued", {"queue": queue, "seq": seq}, queue_name=queue)
        if seq < UNQUEUED:
            await add_job(pool, "unqueued", {"seq": seq})

    summary = await Worker(database_url, tasks=registry, options=fast_options(concurrency=8)).run_once()

    assert (summary.succeeded, summary.failed) == (len(QUEUES) * JOBS_PER_QUEUE + UNQUEUED, 0)
    assert await job_count(conn) == 0
    for queue in QUEUES:
        runs = sorted((s for s in spans if s.queue == queue), key=lambda s: s.start)
        assert [s.seq for s in runs] == list(range(JOBS_PER_QUEUE)), f"queue {queue} ran out of order"
        for earlier, later in itertools.pairwise(runs):
            assert earlier.end <= later.start, f"queue {queue}: job {later.seq} started before {earlier.seq} ended"
    # Jobs of different queues did share the worker's slots: serial per queue, not globally.
    queued_spans = sorted((s for s in spans if s.queue is not None), key=lambda s: s.start)
    assert any(a.end > b.start for a, b in itertools.pairwise(queued_spans))
