"""A worker's slots without a database: the local queue over ``MemoryClaims``, filled by hand, and a completer
that only queues results (it is never started). For the runner's own tests and bench/tools/runner_loop.py."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from typing import Any

from backfill.core import Events, Job, TaskRegistry
from backfill.core.hooks import Hooks
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.slots import Slots, plain_async_handlers
from tests.support.memory_claims import MemoryClaims


def slots_over(
    registry: TaskRegistry,
    jobs: Sequence[Job] = (),
    *,
    options: WorkerOptions | None = None,
    events: Events | None = None,
    summary: RunSummary | None = None,
) -> Slots:
    """Slots running ``registry``'s handlers on ``jobs``, queued in the order the database would give them."""
    options = options if options is not None else WorkerOptions()
    events = events if events is not None else Events()
    summary = summary if summary is not None else RunSummary()
    wake = asyncio.Event()
    queue = LocalQueue(MemoryClaims(), options, summary=summary, events=events, wake=wake)
    queue.heap = [(job.priority, job.run_at, job.id, job) for job in jobs]
    heapq.heapify(queue.heap)
    nothing: Any = None  # the pool and the statements: nothing here reaches a database
    return Slots(
        queue,
        options,
        pool=nothing,
        queries=nothing,
        registry=registry,
        plain_async=plain_async_handlers(registry),
        summary=summary,
        events=events,
        hooks=Hooks(),
        wake=wake,
    )
