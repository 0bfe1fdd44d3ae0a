"""Observers that only count (metrics, the success log) leave jobs on the runners' fast path, and still see
every attempt: the slots with their local queue filled by hand, no database (the completer only queues)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from backfill.core import Event, Events, Job, TaskRegistry
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.slots import Slots
from backfill.metrics import BackfillMetrics
from tests.support.slots import slots_over

NOW = datetime.now(UTC)


def _slots(events: Events, summary: RunSummary, registry: TaskRegistry, jobs: list[Job]) -> Slots:
    return slots_over(registry, jobs, options=WorkerOptions(concurrency=4), events=events, summary=summary)


async def test_metrics_count_every_attempt_without_sending_jobs_down_the_observed_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: dict[str, int]) -> None:
        await asyncio.sleep(0)

    @registry.task("broken")
    async def broken(payload: dict[str, int]) -> None:
        raise ValueError("no")

    flags = frozenset({"backfill:retry=fast"})  # a retry policy's flag: no reason to leave the fast path
    jobs = [
        Job(i, "ok" if i % 5 else "broken", {}, None, 5, NOW, 1, 1, None, NOW, NOW, None, NOW, "w", 0, flags)
        for i in range(100)
    ]
    events, summary = Events(), RunSummary()
    metrics = BackfillMetrics(tasks=["ok", "broken"])
    metrics.observe_worker(events, "bulk")
    batches: list[Event] = []
    events.on("attempts:batch", batches.append)
    slots = _slots(events, summary, registry, jobs)

    async def observed_path(job: Job) -> object:
        raise AssertionError(f"job {job.id} took the observed path")

    monkeypatch.setattr(slots._attempts, "run", observed_path)
    slots.start()
    await asyncio.gather(*slots.tasks)
    await slots.finish(asyncio.Event())

    assert (summary.succeeded, summary.failed) == (80, 20)

    def count(name: str, task: str) -> float | None:
        labels = {"task": task, "lane": "bulk", "priority_band": "bulk_low"}
        return metrics.registry.get_sample_value(f"backfill_jobs_{name}_total", labels)

    assert (count("started", "ok"), count("succeeded", "ok")) == (80, 80)
    assert (count("started", "broken"), count("failed", "broken"), count("failed_permanently", "broken")) == (
        20,
        20,
        20,
    )
    duration = metrics.registry.get_sample_value("backfill_job_duration_seconds_count", {"task": "ok", "lane": "bulk"})
    assert duration == 80
    # Batched: far fewer events than jobs (one per loop turn at most), and every attempt in exactly one of them.
    assert len(batches) < 50
    assert sorted(job.id for batch in batches for job, _at in batch["started"]) == list(range(100))


async def test_a_job_listener_still_sees_every_job_on_the_observed_path() -> None:
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: dict[str, int]) -> None:
        return None

    jobs = [Job(i, "ok", {}, None, 0, NOW, 1, 1, None, NOW, NOW, None, NOW, "w", 0) for i in range(10)]
    events, summary = Events(), RunSummary()
    started: list[int] = []
    events.on("job:start", lambda event: started.append(event["job"].id))
    batches: list[Event] = []
    events.on("attempts:batch", batches.append)
    slots = _slots(events, summary, registry, jobs)
    slots.start()
    await asyncio.gather(*slots.tasks)
    await slots.finish(asyncio.Event())
    assert sorted(started) == list(range(10))
    assert sorted(job.id for batch in batches for job, _duration in batch["succeeded"]) == list(range(10))
