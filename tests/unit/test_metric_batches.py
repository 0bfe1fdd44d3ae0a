"""Metrics fed in batches: the lock-free histogram writes what prometheus-client's Histogram writes, and one
``attempts:batch`` event with several series counts each job under its own labels."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from backfill.core import Events, Job
from backfill.core.run.attempt_log import AttemptFailure
from backfill.metrics import BackfillMetrics
from backfill.metrics.instruments import DURATION_BUCKETS
from backfill.metrics.timings import BatchHistogram

VALUES = [0.0, 0.004, 0.005, 0.0051, 0.3, 1.0, 2.5, 59.9, 3600.0, 20000.0, 0.02]


def _exposition_without_created(registry: CollectorRegistry) -> list[str]:
    # prometheus-client's own Histogram also writes a _created timestamp, which the batch histogram leaves out.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_the_batch_histogram_writes_what_a_prometheus_histogram_writes() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("t_seconds", "doc", ["task"], registry=theirs, buckets=DURATION_BUCKETS)
    batch = BatchHistogram("t_seconds", "doc", ["task"], DURATION_BUCKETS)
    ours.register(batch)
    for value in VALUES:
        reference.labels("a").observe(value)
    reference.labels("b").observe(7.0)
    batch.labels("a").observe_many(VALUES[:5])
    for value in VALUES[5:]:
        batch.labels("a").observe(value)
    batch.labels("b").observe(7.0)
    assert _exposition_without_created(ours) == _exposition_without_created(theirs)


def _job(job_id: int, task: str, priority: int, flags: frozenset[str] = frozenset()) -> Job:
    now = datetime.now(UTC)
    return Job(
        job_id, task, {}, None, priority, now - timedelta(seconds=2), 1, 3, None, now, now, None, now, "w", 0, flags
    )


def test_one_batch_of_several_series_counts_each_job_under_its_own_labels() -> None:
    metrics = BackfillMetrics(tasks=["a", "b"], lanes=["fast", "bulk", "reports"])
    events = Events()
    metrics.observe_worker(events, "bulk")
    reports = frozenset({"backfill:lane", "backfill:lane=reports"})
    jobs = [_job(1, "a", 5), _job(2, "b", -10), _job(3, "a", 5), _job(4, "a", 0, reports), _job(5, "b", -10)]
    at = datetime.now(UTC).timestamp()
    events.emit(
        "attempts:batch",
        worker_id="w",
        started=[(job, at) for job in jobs],
        succeeded=[(jobs[0], 0.25), (jobs[1], 0.5), (jobs[2], 0.25)],
        failed=[
            AttemptFailure(jobs[3], RuntimeError("x"), 1.0, final=False, timed_out=True, interrupted=False),
            AttemptFailure(jobs[4], RuntimeError("y"), None, final=True, timed_out=False, interrupted=False),
        ],
        skipped=[],
    )

    def count(name: str, task: str, lane: str, band: str) -> float | None:
        labels = {"task": task, "lane": lane, "priority_band": band}
        return metrics.registry.get_sample_value(f"backfill_jobs_{name}_total", labels)

    def timing(name: str, task: str, lane: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"task": task, "lane": lane})

    assert count("started", "a", "bulk", "bulk_low") == 2
    assert count("started", "b", "fast", "fast_high") == 2
    assert count("started", "a", "reports", "bulk_default") == 1
    assert count("succeeded", "a", "bulk", "bulk_low") == 2
    assert count("succeeded", "b", "fast", "fast_high") == 1
    assert count("retried", "a", "reports", "bulk_default") == 1
    assert count("timed_out", "a", "reports", "bulk_default") == 1
    assert count("failed_permanently", "b", "fast", "fast_high") == 1
    assert count("failed", "b", "fast", "fast_high") == 1
    assert timing("backfill_job_duration_seconds_sum", "a", "bulk") == 0.5
    assert timing("backfill_job_duration_seconds_count", "b", "fast") == 1  # the failure had no duration
    assert timing("backfill_job_duration_seconds_count", "a", "reports") == 1
    lag = timing("backfill_job_start_lag_seconds_sum", "b", "fast")
    assert lag is not None and 3.5 < lag < 6  # two jobs, each run_at about two seconds before the start


def test_a_start_before_run_at_counts_as_no_lag() -> None:
    # Our clock behind the database's: the job starts, by our clock, before its run_at.
    metrics = BackfillMetrics(tasks=["a"])
    events = Events()
    metrics.observe_worker(events, "bulk")
    job = _job(1, "a", 5)._replace(run_at=datetime.now(UTC) + timedelta(seconds=30))
    events.emit("attempts:batch", worker_id="w", started=[(job, time.time())], succeeded=[], failed=[], skipped=[])
    labels = {"task": "a", "lane": "bulk"}
    assert metrics.registry.get_sample_value("backfill_job_start_lag_seconds_sum", labels) == 0
    assert metrics.registry.get_sample_value("backfill_job_start_lag_seconds_bucket", {**labels, "le": "0.005"}) == 1


@pytest.mark.parametrize("started_ago", [0.0, 0.3, 40.0])
def test_start_lags_are_binned_by_when_each_job_started(started_ago: float) -> None:
    # Batches go out a loop turn after their attempts started (binned as of the batch), or later when the loop
    # was held up (each lag on its own): either way a lag of 2 s is in the 2.5 s bucket, not the 1 s one.
    metrics = BackfillMetrics(tasks=["a"])
    events = Events()
    metrics.observe_worker(events, "bulk")
    at = time.time() - started_ago
    jobs = [_job(i, "a", 5)._replace(run_at=datetime.fromtimestamp(at - 2.0, UTC)) for i in range(3)]
    events.emit("attempts:batch", worker_id="w", started=[(j, at) for j in jobs], succeeded=[], failed=[], skipped=[])
    labels = {"task": "a", "lane": "bulk"}

    def bucket(le: str) -> float | None:
        return metrics.registry.get_sample_value("backfill_job_start_lag_seconds_bucket", {**labels, "le": le})

    assert (bucket("1.0"), bucket("2.5")) == (0, 3)
    total = metrics.registry.get_sample_value("backfill_job_start_lag_seconds_sum", labels)
    assert total == pytest.approx(6.0, abs=0.01)
