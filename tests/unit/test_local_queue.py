"""The local queue on its own: order, fetch sizing, refill, suspect isolation, reconciliation, hand-back, forfeit.

Its claims come from ``MemoryClaims`` (tests/support/memory_claims.py), the ``ClaimSource`` protocol in memory,
which keeps rows "locked by us" the way the claim connection keeps them in the database. The SQL behind the
protocol is tested against a real database in ``tests/integration``; here only the queue's own bookkeeping is
under test.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from backfill.core.events import Event, Events
from backfill.core.jobs import SUSPECT_FLAG, Job
from backfill.core.run import local_queue as local_queue_module
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.pause import FetchPause
from tests.support.memory_claims import MemoryClaims

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def make_job(job_id: int, *, priority: int = 0, seconds: int = 0, flags: Iterable[str] = ()) -> Job:
    """A claimed job: only id, priority, run_at and flags matter to the local queue."""
    run_at = EPOCH + timedelta(seconds=seconds)
    return Job(
        job_id, "t", None, None, priority, run_at, 1, 25, None, EPOCH, EPOCH, None, EPOCH, "w", 0, frozenset(flags)
    )


@dataclass
class Runners:
    """The slots as the queue sees them (the ``RunningJobs`` protocol)."""

    concurrency: int = 4
    running: int = 0
    finished: int = 0


class Clock:
    """Stands for the ``time`` module inside local_queue: the throughput estimate reads ``monotonic()``."""

    def __init__(self) -> None:
        self.now = 1024.0  # steps below are powers of two: exact in binary, so the estimates are exact

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(local_queue_module, "time", fake)
    return fake


@pytest.fixture
def events() -> Events:
    return Events()


def make_queue(
    claims: MemoryClaims,
    events: Events | None = None,
    *,
    size: int = 1000,
    lookahead: float = 0.1,
    summary: RunSummary | None = None,
    wake: asyncio.Event | None = None,
) -> LocalQueue:
    options = WorkerOptions(local_queue_size=size, lookahead=lookahead, worker_id="w")
    return LocalQueue(
        claims,
        options,
        summary=summary if summary is not None else RunSummary(),
        events=events if events is not None else Events(),
        wake=wake if wake is not None else asyncio.Event(),
    )


def popped_ids(queue: LocalQueue) -> list[int]:
    """Empty the heap as the runners do, best first."""
    return [heapq.heappop(queue.heap)[3].id for _ in range(len(queue.heap))]


# -- order ---------------------------------------------------------------------------------------------------------


async def test_jobs_come_out_in_database_order_across_fetches(clock: Clock) -> None:
    first = [make_job(5, priority=1), make_job(3, priority=0, seconds=10), make_job(4, priority=0, seconds=10)]
    second = [make_job(1, priority=-1), make_job(2, priority=0, seconds=5)]
    claims = MemoryClaims(first)
    queue = make_queue(claims)
    runners = Runners(concurrency=3)

    assert await queue.fill(runners) == 3
    claims.available = second
    runners.concurrency = 8
    assert await queue.fill(runners) == 2

    # priority, then run_at, then id: what the fetch statement's ORDER BY would have given
    assert popped_ids(queue) == [1, 2, 3, 4, 5]


# -- fetch sizing --------------------------------------------------------------------------------------------------


async def test_without_a_throughput_estimate_a_fetch_asks_for_the_free_slots(clock: Clock) -> None:
    claims = MemoryClaims([make_job(i) for i in range(1, 20)])
    queue = make_queue(claims)

    assert await queue.fill(Runners(concurrency=4, running=1)) == 3
    assert claims.claim_sizes == [3]
    assert queue.refill_below == 0


async def test_a_fetch_adds_lookahead_seconds_of_measured_work_to_the_free_slots(clock: Clock) -> None:
    queue = make_queue(MemoryClaims(), lookahead=0.1)
    runners = Runners(concurrency=4)
    assert queue.fetch_size(runners) == 4  # nothing finished yet: no estimate

    clock.now += 0.125
    runners.finished = 125  # 1000 jobs/s
    assert queue.fetch_size(runners) == 4 + 100
    assert queue.refill_below == 75  # refill once a quarter of the lookahead is used

    clock.now += 0.015625  # under 50 ms since the last mark: the estimate stands
    runners.finished = 130
    assert queue.fetch_size(runners) == 104

    clock.now += 0.109375  # 5 jobs in the 0.125 s since the mark, 40 jobs/s: averaged with 1000, 520 jobs/s
    assert queue.fetch_size(runners) == 4 + 52


async def test_a_fetch_is_capped_by_the_local_queue_size_and_counts_what_is_queued(clock: Clock) -> None:
    claims = MemoryClaims([make_job(i) for i in range(1, 100)])
    queue = make_queue(claims, size=10, lookahead=1.0)
    runners = Runners(concurrency=4, finished=0)
    queue.fetch_size(runners)
    clock.now += 1.0
    runners.finished = 1000

    assert queue.fetch_size(runners) == 10  # 4 free slots + 10 ahead, capped at 10
    assert await queue.fill(runners) == 10
    runners.running = 4
    assert queue.fetch_size(runners) == 0  # 0 free + 10 ahead - 10 queued


async def test_no_room_means_no_claim(clock: Clock) -> None:
    claims = MemoryClaims([make_job(1)])
    queue = make_queue(claims)

    assert await queue.fill(Runners(concurrency=2, running=2)) is None
    assert claims.claim_sizes == []


# -- refill --------------------------------------------------------------------------------------------------------


async def test_a_full_batch_asks_for_a_refill_once_the_heap_runs_low(clock: Clock) -> None:
    claims = MemoryClaims([make_job(i) for i in range(1, 200)])
    queue = make_queue(claims, lookahead=0.1)
    runners = Runners(concurrency=2)
    queue.fetch_size(runners)
    clock.now += 0.125
    runners.finished = 100  # 800 jobs/s: 80 ahead, refill below 60

    assert await queue.fill(runners) == 82
    assert queue.more_available and queue.refill_below == 60
    assert not queue.wants_refill()
    for _ in range(22):  # runners take jobs
        heapq.heappop(queue.heap)
    assert queue.wants_refill()


async def test_a_short_batch_means_nothing_more_waits(clock: Clock, events: Events) -> None:
    empty: list[Event] = []
    events.on("worker:getJob:empty", empty.append)
    claims = MemoryClaims([make_job(1)])
    queue = make_queue(claims, events)

    assert await queue.fill(Runners(concurrency=4)) == 1
    assert not queue.more_available and not queue.wants_refill()
    assert empty == []

    assert await queue.fill(Runners(concurrency=4)) == 0  # claimed nothing: runners have nothing to start
    assert [event["worker_id"] for event in empty] == ["w"]


async def test_runnable_exists_asks_the_claim_source(clock: Clock) -> None:
    claims = MemoryClaims([make_job(1)])
    queue = make_queue(claims)
    assert await queue.runnable_exists()
    claims.available = []
    assert not await queue.runnable_exists()


# -- suspect isolation ---------------------------------------------------------------------------------------------


async def test_a_suspect_waits_for_the_running_jobs_then_runs_alone(clock: Clock) -> None:
    claims = MemoryClaims([make_job(1), make_job(2), make_job(3)])
    queue = make_queue(claims)
    runners = Runners(concurrency=10)
    assert await queue.fill(runners) == 3
    heapq.heappop(queue.heap), heapq.heappop(queue.heap)  # runners took jobs 1 and 2; job 3 waits
    runners.running = 2
    claims.available = [make_job(6), make_job(4, flags=[SUSPECT_FLAG, "other"]), make_job(5)]

    assert await queue.fill(runners) is None  # two jobs still run here: the suspect waits
    assert sorted(claims.handed_back) == [3, 5, 6]  # the rest of its batch, and what was queued
    assert queue.heap == [] and queue.isolated is not None and queue.isolated.id == 4
    assert claims.claim_sizes == [10, 7]

    claims.available = [make_job(8)]
    runners.running = 1
    assert await queue.fill(runners) is None  # still not idle, and nothing else is fetched meanwhile
    assert claims.claim_sizes == [10, 7]

    runners.running = 0
    assert await queue.fill(runners) == 1  # idle: the suspect is queued, alone
    assert popped_ids(queue) == [4]  # a runner took it
    runners.running = 1
    assert await queue.fill(runners) is None  # while it runs, nothing is fetched
    assert claims.claim_sizes == [10, 7]

    queue.isolated = None  # what the runner does when the suspect ends without killing us
    runners.running = 0
    assert await queue.fill(runners) == 1
    assert popped_ids(queue) == [8]


async def test_a_failed_hand_back_at_isolation_asks_for_a_reconciliation(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    claims = MemoryClaims([make_job(1, flags=[SUSPECT_FLAG]), make_job(2)])
    claims.failing_hand_backs = 1
    queue = make_queue(claims)

    with caplog.at_level(logging.WARNING, logger="backfill.worker"):
        assert await queue.fill(Runners()) == 1  # nothing runs: the suspect is queued at once
    assert queue.reconcile_needed
    assert claims.locked == {1, 2}  # job 2 stays locked by us, owned by nothing: the reconciliation's job
    assert "could not hand back 1 job(s)" in caplog.text


# -- reconciliation ------------------------------------------------------------------------------------------------


async def test_reconcile_releases_what_nothing_here_owns(clock: Clock, events: Events) -> None:
    reconciled: list[Event] = []
    events.on("worker:reconciled", reconciled.append)
    claims = MemoryClaims([make_job(1), make_job(2)])
    queue = make_queue(claims, events)
    await queue.fill(Runners())
    claims.locked.update({10, 11, 12})  # 10 runs here, 11 waits to be written, 12's claim reply was lost
    queue.reconcile_needed = True

    await queue.reconcile({10, 11})

    assert claims.owned_at_release == {1, 2, 10, 11}
    assert claims.locked == {1, 2, 10, 11}
    assert not queue.reconcile_needed
    assert [event["released"] for event in reconciled] == [[12]]

    await queue.reconcile({10, 11})
    assert len(reconciled) == 1  # nothing released: no event


async def test_a_reason_to_reconcile_that_arrives_during_one_is_kept(clock: Clock) -> None:
    claims = MemoryClaims()
    claims.release_gate = asyncio.Event()
    queue = make_queue(claims)
    queue.reconcile_needed = True

    reconciling = asyncio.create_task(queue.reconcile(()))
    await asyncio.sleep(0)
    assert not queue.reconcile_needed  # cleared when it starts
    queue.forfeit_unstarted("a lease was lost meanwhile")
    claims.release_gate.set()
    await reconciling

    assert queue.reconcile_needed  # the forfeit's orphans may post-date the owned set: another round


# -- hand-back at shutdown -----------------------------------------------------------------------------------------


async def test_shutdown_hands_back_unstarted_jobs_retrying_through_an_outage(clock: Clock) -> None:
    summary = RunSummary()
    claims = MemoryClaims([make_job(1), make_job(2), make_job(3)])
    queue = make_queue(claims, summary=summary)
    await queue.fill(Runners(concurrency=3))
    claims.failing_hand_backs = 2

    assert await queue.hand_back_unstarted(asyncio.Event())

    assert sorted(claims.handed_back) == [1, 2, 3]
    assert summary.returned == 3
    assert queue.heap == []


async def test_the_suspect_not_yet_started_is_handed_back_too(clock: Clock) -> None:
    summary = RunSummary()
    claims = MemoryClaims([make_job(1, flags=[SUSPECT_FLAG])])
    queue = make_queue(claims, summary=summary)
    assert await queue.fill(Runners(running=1)) is None  # waiting for the running job

    assert await queue.hand_back_unstarted(asyncio.Event())
    assert claims.handed_back == [1] and summary.returned == 1
    assert queue.isolated is None


async def test_a_second_stop_request_gives_up_the_hand_back(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    summary = RunSummary()
    claims = MemoryClaims([make_job(1)])
    queue = make_queue(claims, summary=summary)
    await queue.fill(Runners())
    claims.failing_hand_backs = 1_000
    give_up = asyncio.Event()
    give_up.set()

    with caplog.at_level(logging.ERROR, logger="backfill.worker"):
        assert not await queue.hand_back_unstarted(give_up)
    assert "could not return 1 unstarted job(s)" in caplog.text
    assert summary.returned == 0 and queue.heap == []


async def test_an_empty_queue_has_nothing_to_hand_back(clock: Clock) -> None:
    claims = MemoryClaims()
    claims.failing_hand_backs = 1  # would fail if it were asked
    assert await make_queue(claims).hand_back_unstarted(asyncio.Event())


# -- forfeit -------------------------------------------------------------------------------------------------------


async def test_a_forfeit_drops_unstarted_jobs_and_asks_for_a_reconciliation(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    summary = RunSummary()
    wake = asyncio.Event()
    claims = MemoryClaims([make_job(1), make_job(2)])
    queue = make_queue(claims, summary=summary, wake=wake)
    await queue.fill(Runners())

    with caplog.at_level(logging.WARNING, logger="backfill.worker"):
        queue.forfeit_unstarted("it was declared dead")

    assert queue.heap == [] and summary.forfeited == 2
    assert claims.handed_back == []  # dropped, not handed back: they may run elsewhere already
    assert queue.reconcile_needed and wake.is_set()
    assert "dropped 2 claimed job(s) it had not started, because it was declared dead" in caplog.text


async def test_a_forfeit_with_nothing_queued_still_asks_for_a_reconciliation(clock: Clock) -> None:
    summary = RunSummary()
    wake = asyncio.Event()
    queue = make_queue(MemoryClaims(), summary=summary, wake=wake)

    queue.forfeit_unstarted("a lease was lost")

    assert summary.forfeited == 0
    assert queue.reconcile_needed and wake.is_set()


async def test_a_forfeit_drops_a_waiting_suspect_but_not_a_running_one(clock: Clock) -> None:
    summary = RunSummary()
    claims = MemoryClaims([make_job(1, flags=[SUSPECT_FLAG])])
    queue = make_queue(claims, summary=summary)
    runners = Runners(running=1)
    await queue.fill(runners)

    queue.forfeit_unstarted("a lease was lost")
    assert queue.isolated is None and summary.forfeited == 1

    claims.available = [make_job(2, flags=[SUSPECT_FLAG])]
    runners.running = 0
    assert await queue.fill(runners) == 1  # started at once: nothing runs
    queue.heap.clear()  # a runner took it
    queue.forfeit_unstarted("a lease was lost")
    assert queue.isolated is not None and queue.isolated.id == 2  # it runs: only the runner may clear it
    assert summary.forfeited == 1


# -- pauses and cancels --------------------------------------------------------------------------------------------


def job_of(job_id: int, task: str, queue: str | None = None) -> Job:
    return make_job(job_id)._replace(task_identifier=task, queue_name=queue)


async def test_a_pause_takes_the_claimed_jobs_it_holds_out_of_the_queue_for_release(clock: Clock) -> None:
    claims = MemoryClaims([job_of(1, "a"), job_of(2, "b"), job_of(3, "b", "q"), job_of(4, "c")])
    wake = asyncio.Event()
    queue = make_queue(claims, wake=wake)
    assert await queue.fill(Runners(concurrency=4)) == 4

    queue.apply_pause(FetchPause.of(tasks=["a"], queues=["q"]))
    assert sorted(item[2] for item in queue.heap) == [2, 4]
    assert queue.reconcile_needed and wake.is_set()
    # The reconciliation before the next fetch unlocks what nothing here owns any more: the paused jobs.
    await queue.reconcile(owned_elsewhere=())
    assert claims.locked == {2, 4}
    assert popped_ids(queue) == [2, 4]  # still in database order


async def test_a_claim_that_was_in_flight_when_the_pause_came_keeps_none_of_the_paused_jobs(clock: Clock) -> None:
    claims = MemoryClaims([job_of(1, "a"), job_of(2, "b")])
    queue = make_queue(claims)
    queue.apply_pause(FetchPause.of(tasks=["a"]))  # MemoryClaims does not filter: as if the claim raced the pause
    assert await queue.fill(Runners(concurrency=4)) == 1
    assert popped_ids(queue) == [2] and queue.reconcile_needed


async def test_a_pause_that_holds_nothing_queued_changes_nothing(clock: Clock) -> None:
    claims = MemoryClaims([job_of(1, "a")])
    queue = make_queue(claims)
    await queue.fill(Runners())
    queue.apply_pause(FetchPause.of(tasks=["z"]))
    assert popped_ids(queue) == [1] and not queue.reconcile_needed
    queue.apply_pause(FetchPause())
    assert queue.pause is None


async def test_take_removes_one_unstarted_job_and_keeps_the_order(clock: Clock) -> None:
    claims = MemoryClaims([make_job(i, priority=i % 3) for i in range(1, 8)])
    queue = make_queue(claims)
    await queue.fill(Runners(concurrency=8))
    taken = queue.take(5)
    assert taken is not None and taken.id == 5
    assert queue.take(5) is None and queue.take(99) is None
    assert popped_ids(queue) == [3, 6, 1, 4, 7, 2]
