"""Slots.cancel without a database: the slots with their local queue filled by hand (the completer only queues
results here), so what a cancel does to a running or waiting job is seen directly."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from backfill.core import CancelAnswer, Event, Events, Job, JobContext, TaskRegistry
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.slots import Slots
from tests.support.slots import slots_over

NOW = datetime.now(UTC)


def _job(job_id: int, task: str) -> Job:
    return Job(job_id, task, {"n": job_id}, None, 0, NOW, 1, 25, None, NOW, NOW, None, NOW, "w", 0)


def _slots(
    registry: TaskRegistry, jobs: list[Job], *, concurrency: int = 1, counted: bool = False
) -> tuple[Slots, RunSummary, list[Event]]:
    events, summary = Events(), RunSummary()
    if counted:  # an attempts:batch listener (metrics): the fast path that records each attempt
        events.on("attempts:batch", lambda event: None)
    cancelled: list[Event] = []
    events.on("job:cancelled", cancelled.append)
    options = WorkerOptions(concurrency=concurrency, cancel_grace_period=0.2)
    return slots_over(registry, jobs, options=options, events=events, summary=summary), summary, cancelled


def _completed_ids(slots: Slots) -> list[int]:
    return [job.id for job in slots.completer._completed]


async def test_a_running_async_job_is_cancelled_and_the_runner_goes_on_to_the_next() -> None:
    registry = TaskRegistry()
    seen: list[str] = []
    started = asyncio.Event()

    @registry.task("hang")
    async def hang(payload: Any) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    @registry.task("quick")
    async def quick(payload: Any) -> None:
        seen.append("quick")

    slots, summary, cancelled = _slots(registry, [_job(1, "hang"), _job(2, "quick")])
    slots.start()
    await started.wait()
    assert slots.cancel(1, "operator") is CancelAnswer.RUNNING
    assert slots.cancel(1, "again") is CancelAnswer.RUNNING  # asked already: nothing more happens
    await asyncio.gather(*slots.tasks)
    assert seen == ["cancelled", "quick"]
    assert (summary.cancelled, summary.succeeded, summary.failed, summary.interrupted) == (1, 1, 0, 0)
    assert _completed_ids(slots) == [1, 2]  # the cancelled job is completed (deleted), not failed
    assert [(e["job"].id, e["reason"], e["started"]) for e in cancelled] == [(1, "operator", True)]


@pytest.mark.parametrize("counted", [False, True], ids=["plain", "counted"])
async def test_a_handler_that_swallows_the_cancellation_still_ends_as_cancelled(counted: bool) -> None:
    registry = TaskRegistry()
    started = asyncio.Event()

    @registry.task("stubborn")
    async def stubborn(payload: Any) -> str:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "I carried on"
        return "never"

    @registry.task("quick")
    async def quick(payload: Any) -> None:
        await asyncio.sleep(0)  # a cancellation still pending on the runner would land here

    slots, summary, _ = _slots(registry, [_job(1, "stubborn"), _job(2, "quick")], counted=counted)
    slots.start()
    await started.wait()
    slots.cancel(1, "")
    await asyncio.gather(*slots.tasks)
    assert (summary.cancelled, summary.succeeded, summary.failed) == (1, 1, 0)


async def test_a_claimed_job_not_started_is_cancelled_without_running() -> None:
    registry = TaskRegistry()
    ran: list[int] = []

    @registry.task("t")
    async def t(payload: Any) -> None:
        ran.append(payload["n"])

    slots, summary, cancelled = _slots(registry, [_job(1, "t"), _job(2, "t")])
    assert slots.cancel(2, "not wanted") is CancelAnswer.UNSTARTED
    assert slots.cancel(3, "") is CancelAnswer.NOT_HERE
    slots.start()
    await asyncio.gather(*slots.tasks)
    assert ran == [1]
    assert summary.cancelled == 1 and _completed_ids(slots) == [2, 1]
    assert [(e["job"].id, e["started"]) for e in cancelled] == [(2, False)]


async def test_a_synchronous_handler_sees_the_abort_signal_and_its_return_ends_the_job_as_cancelled() -> None:
    registry = TaskRegistry()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    @registry.task("thread")
    def thread(payload: Any, ctx: JobContext) -> str:
        loop.call_soon_threadsafe(started.set)
        while not ctx.abort_signal.is_set():
            time.sleep(0.001)
        return "stopped early"

    slots, summary, _ = _slots(registry, [_job(1, "thread")])
    slots.start()
    await started.wait()
    assert slots.cancel(1, "") is CancelAnswer.RUNNING
    await asyncio.gather(*slots.tasks)
    assert (summary.cancelled, summary.succeeded) == (1, 0)
    assert not slots._cancel_timers  # the grace timer went with the job


async def test_a_synchronous_handler_that_ignores_the_signal_is_given_up_after_the_grace_period() -> None:
    registry = TaskRegistry()
    started = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    @registry.task("deaf")
    def deaf(payload: Any, ctx: JobContext) -> None:
        loop.call_soon_threadsafe(started.set)
        release.wait(10)

    slots, summary, _ = _slots(registry, [_job(1, "deaf")])
    slots.start()
    await started.wait()
    slots.cancel(1, "")
    try:
        await asyncio.gather(*slots.tasks)  # within the grace period (0.2 s), not the handler's 10 s
        assert summary.cancelled == 1 and _completed_ids(slots) == [1]
    finally:
        release.set()
        slots.close()


async def test_a_shutdown_during_a_cancel_records_the_job_as_interrupted() -> None:
    """Both cancellations reach the runner: the worker's own wins, as at any shutdown (the job is retried, and the
    open request is settled later by the runners' poll)."""
    registry = TaskRegistry()
    started = asyncio.Event()

    @registry.task("hang")
    async def hang(payload: Any) -> None:
        started.set()
        await asyncio.sleep(3600)

    slots, summary, _ = _slots(registry, [_job(1, "hang")])
    slots.start()
    await started.wait()
    slots.cancel(1, "")
    for runner in slots.tasks:
        runner.cancel()
    await asyncio.gather(*slots.tasks, return_exceptions=True)
    assert (summary.cancelled, summary.interrupted) == (0, 1)
