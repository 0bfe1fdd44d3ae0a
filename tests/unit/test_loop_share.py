"""Workers sharing a loop: while the leading worker picks up jobs, its followers' runners yield after every job,
so each loop turn is short. Counted in loop turns, not timed: asyncio runs ready callbacks in order."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from backfill.core import Events, Job, LoopShare, TaskRegistry
from backfill.core.hooks import Hooks
from backfill.core.jobs import CLAIMED_JOB_COLUMNS
from backfill.core.run.claims import Claims as RealClaims
from backfill.core.run.fetcher import Fetcher
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.queries import WorkerQueries
from backfill.core.run.slots import Slots, plain_async_handlers
from backfill.core.schema import SchemaName
from tests.support.memory_claims import MemoryClaims
from tests.support.records import Record

NOW = datetime.now(UTC)
CONCURRENCY = 4


class Claims(MemoryClaims):
    """In-memory claims that note whether the loop was urgent while each claim ran."""

    def __init__(self, jobs: Sequence[Job] = ()) -> None:
        super().__init__(jobs)
        self.urgent_during_claim: list[bool] = []
        self.share: LoopShare | None = None

    async def claim(self, count: int) -> list[Job]:
        if self.share is not None:
            self.urgent_during_claim.append(self.share.urgent)
        return await super().claim(count)


def _jobs(count: int) -> list[Job]:
    return [Job(i, "busy", {}, None, 0, NOW, 1, 1, None, NOW, NOW, None, NOW, "w", 0) for i in range(count)]


def _slots(queue: LocalQueue, registry: TaskRegistry, summary: RunSummary, follows: LoopShare | None) -> Slots:
    nothing: Any = None  # pool and queries: the fast path never reaches the database
    return Slots(
        queue,
        WorkerOptions(concurrency=CONCURRENCY),
        pool=nothing,
        queries=nothing,
        registry=registry,
        plain_async=plain_async_handlers(registry),
        summary=summary,
        events=Events(),
        hooks=Hooks(),
        wake=asyncio.Event(),
        follows=follows,
    )


async def _jobs_run_during_turns(*, urgent: bool, turns: int) -> int:
    """How many of a follower's never-suspending jobs run while another coroutine waits ``turns`` loop turns."""
    registry = TaskRegistry()
    ran: list[int] = []

    @registry.task("busy")
    async def busy(payload: dict[str, Any]) -> None:
        ran.append(1)  # never suspends: a CPU-light job draining at full speed

    share = LoopShare()
    summary = RunSummary()
    queue = LocalQueue(
        Claims(), WorkerOptions(concurrency=CONCURRENCY), summary=summary, events=Events(), wake=asyncio.Event()
    )
    queue.heap = [(job.priority, job.run_at, job.id, job) for job in _jobs(1000)]
    heapq.heapify(queue.heap)
    slots = _slots(queue, registry, summary, share)
    share.urgent = urgent
    slots.start()
    for _ in range(turns):  # the leading worker's pickup: a few hops through the loop
        await asyncio.sleep(0)
    during = len(ran)
    slots.stopping = True
    await asyncio.gather(*slots.tasks)
    return during


async def test_followers_yield_after_every_job_while_the_loop_is_urgent() -> None:
    calm = await _jobs_run_during_turns(urgent=False, turns=5)
    urgent = await _jobs_run_during_turns(urgent=True, turns=5)
    # Each runner runs one job per turn when urgent, eight otherwise.
    assert urgent <= CONCURRENCY * 5
    assert calm >= CONCURRENCY * 8 * 4


async def test_the_leading_fetcher_marks_the_loop_urgent_until_its_runners_have_had_a_turn() -> None:
    registry = TaskRegistry()
    started_while_urgent: list[bool] = []
    share = LoopShare()

    @registry.task("busy")
    async def busy(payload: dict[str, Any]) -> None:
        started_while_urgent.append(share.urgent)

    claims = Claims(_jobs(3))
    claims.share = share
    summary, wake = RunSummary(), asyncio.Event()
    options = WorkerOptions(concurrency=CONCURRENCY)
    queue = LocalQueue(claims, options, summary=summary, events=Events(), wake=wake)
    slots = _slots(queue, registry, summary, follows=None)
    nothing: Any = None
    fetcher = Fetcher(queue, slots, nothing, None, options, events=Events(), wake=wake, leads=share)

    assert await fetcher._fill() == 3
    assert claims.urgent_during_claim == [True]
    assert share.urgent  # the runners the fill created have not run yet
    await asyncio.gather(*slots.tasks)
    assert started_while_urgent and all(started_while_urgent)  # the first turn of the runners is still urgent
    await asyncio.sleep(0)
    assert not share.urgent


def _rows(count: int) -> list[Record]:
    """Claimed rows as the fetch returns them (CLAIMED_JOB_COLUMNS), with small payloads that never need a turn."""
    fields = {
        "job_queue_id": None,
        "task_id": 1,
        "payload": '{"n":1}',
        "priority": 0,
        "run_at": NOW,
        "attempts": 1,
        "max_attempts": 25,
        "last_error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "key": None,
        "locked_at": NOW,
        "locked_by": "w",
        "revision": 0,
        "flags": None,
        "queue_name": None,
    }
    return [Record({name: i if name == "id" else fields[name] for name in CLAIMED_JOB_COLUMNS}) for i in range(count)]


async def _turns_of_others_during_decode(share: LoopShare | None, rows: int) -> int:
    """Loop turns another coroutine gets while a follower's claim decodes ``rows`` rows."""
    nothing: Any = None  # the pool: decoding never reaches the database
    claims = RealClaims(nothing, WorkerQueries.for_schema(SchemaName("graphile_worker")), "w", ["busy"], follows=share)
    claims._task_names = {1: "busy"}
    turns = 0
    decoding = True

    async def other() -> None:
        nonlocal turns
        while decoding:
            await asyncio.sleep(0)
            turns += 1

    watcher = asyncio.create_task(other())
    await asyncio.sleep(0)  # the watcher is waiting on its first turn
    turns = 0
    jobs = await claims._decode(_rows(rows))
    decoding = False
    await watcher
    assert [job.id for job in jobs] == list(range(rows))
    return turns


async def test_a_followers_claim_makes_way_while_decoding_only_when_the_loop_is_urgent() -> None:
    urgent = LoopShare()
    urgent.urgent = True
    # 640 rows: ten looks at the share, each making way for three turns, as for a large payload.
    assert await _turns_of_others_during_decode(urgent, 640) >= 10
    assert await _turns_of_others_during_decode(LoopShare(), 640) <= 1
    assert await _turns_of_others_during_decode(None, 640) <= 1
