"""Prometheus metrics: counters and timings from a real worker's events, queue gauges from real rows, /metrics."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import platform
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

from backfill.core import LATEST_REVISION, Events, RetryAfter, SchemaName, TaskRegistry, Worker, add_job, migrate
from backfill.metrics import BackfillMetrics, QueueStatsCollector, serve_metrics
from tests.integration.worker_support.helpers import JOBS_TABLE, fast_options
from tests.support.waiting import wait_for

REPORTS_FLAGS = ["backfill:lane", "backfill:lane=reports"]


def sample(metrics: BackfillMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def job_labels(task: str, lane: str, band: str) -> dict[str, str]:
    return {"task": task, "lane": lane, "priority_band": band}


async def test_worker_events_count_attempts_by_task_lane_and_priority_band(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    metrics = BackfillMetrics(tasks=["ok", "flaky", "broken"])
    busy_inside: list[float | None] = []
    flaky_attempts: list[int] = []
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: Any) -> None:
        busy_inside.append(sample(metrics, "backfill_busy_slots", lane="fast"))

    @registry.task("flaky")
    async def flaky(payload: Any) -> None:
        flaky_attempts.append(1)
        if len(flaky_attempts) == 1:
            raise RetryAfter(0)  # due again at once, so the same run_once picks the retry up

    @registry.task("broken")
    async def broken(payload: Any) -> None:
        raise RuntimeError("always")

    @registry.task("stranger")
    async def stranger(payload: Any) -> None:
        pass

    events = Events()
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=2), events=events)
    stop = metrics.observe_worker(events, "fast", busy_slots=lambda: worker.busy_slots)

    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    await add_job(pool, "ok", priority=-10, run_at=a_minute_ago)
    await add_job(pool, "ok", priority=5)
    await add_job(pool, "ok", priority=0, flags=REPORTS_FLAGS)  # a lane these metrics don't name
    await add_job(pool, "flaky", priority=5, max_attempts=3)
    await add_job(pool, "broken", priority=-10, max_attempts=1)
    await add_job(pool, "stranger", priority=0)
    summary = await worker.run_once()
    assert (summary.succeeded, summary.failed) == (5, 2)

    def count(name: str, task: str, lane: str, band: str) -> float | None:
        return sample(metrics, f"backfill_jobs_{name}_total", **job_labels(task, lane, band))

    assert count("started", "ok", "fast", "fast_high") == 1
    assert count("started", "ok", "bulk", "bulk_low") == 1
    assert count("started", "ok", "other", "bulk_default") == 1
    assert count("started", "flaky", "bulk", "bulk_low") == 2
    assert count("started", "broken", "fast", "fast_high") == 1
    assert count("started", "other", "bulk", "bulk_default") == 1  # "stranger" is not a named task
    assert count("succeeded", "flaky", "bulk", "bulk_low") == 1
    assert count("succeeded", "broken", "fast", "fast_high") == 0
    assert count("failed", "flaky", "bulk", "bulk_low") == 1
    assert count("retried", "flaky", "bulk", "bulk_low") == 1
    assert count("failed_permanently", "flaky", "bulk", "bulk_low") == 0
    assert count("failed", "broken", "fast", "fast_high") == 1
    assert count("retried", "broken", "fast", "fast_high") == 0
    assert count("failed_permanently", "broken", "fast", "fast_high") == 1

    def timing(name: str, suffix: str, task: str, lane: str) -> float | None:
        return sample(metrics, f"backfill_job_{name}_seconds_{suffix}", task=task, lane=lane)

    assert timing("duration", "count", "flaky", "bulk") == 2  # failed attempts are timed too
    assert timing("duration", "count", "ok", "other") == 1
    assert timing("start_lag", "count", "ok", "fast") == 1
    lag = timing("start_lag", "sum", "ok", "fast")
    assert lag is not None and 60 <= lag < 120  # run_at a minute before the start
    short_lag_buckets = sample(metrics, "backfill_job_start_lag_seconds_bucket", task="ok", lane="bulk", le="30.0")
    assert short_lag_buckets == 1

    assert busy_inside and all(busy is not None and busy >= 1 for busy in busy_inside)
    assert sample(metrics, "backfill_busy_slots", lane="fast") == 0

    stop()
    assert sample(metrics, "backfill_busy_slots", lane="fast") is None
    assert not any(events.listens(name) for name in ("job:start", "job:complete", "sweep:recovered"))


def test_enqueued_and_dead_lettered_map_unknown_tasks_and_lanes_to_other() -> None:
    metrics = BackfillMetrics(tasks=["send_email"], lanes=["fast", "bulk", "reports"])
    BackfillMetrics(tasks=["send_email"])  # a second instance has its own registry: no clash

    metrics.job_enqueued("send_email", -20, None, count=3)
    metrics.job_enqueued("send_email", 7, [], count=2)
    metrics.job_enqueued("made_up", 0, REPORTS_FLAGS)
    metrics.job_enqueued("made_up", 0, ["backfill:lane", "backfill:lane=exports"])
    metrics.dead_lettered("send_email", -3, None)

    def enqueued(task: str, lane: str, band: str) -> float | None:
        return sample(metrics, "backfill_jobs_enqueued_total", **job_labels(task, lane, band))

    assert enqueued("send_email", "fast", "emergency") == 3
    assert enqueued("send_email", "bulk", "bulk_low") == 2
    assert enqueued("other", "reports", "bulk_default") == 1
    assert enqueued("other", "other", "bulk_default") == 1
    dead = sample(metrics, "backfill_jobs_dead_lettered_total", **job_labels("send_email", "fast", "fast_default"))
    assert dead == 1


async def test_queue_gauges_per_lane_and_capped_named_queue_match_the_rows_and_drop_to_zero(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    metrics = BackfillMetrics(lanes=["fast", "bulk", "reports"])
    collector = QueueStatsCollector(pool, "graphile_worker", metrics, queue_limit=2)
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)

    for _ in range(2):
        await add_job(pool, "t", priority=-5)
    await add_job(pool, "t", priority=-5, run_at=now - timedelta(minutes=2))
    await add_job(pool, "t", priority=0, run_at=later)
    await add_job(pool, "t", priority=3, queue_name="cust-1")
    await add_job(pool, "t", priority=3, queue_name="cust-1", run_at=later)
    for _ in range(2):
        await add_job(pool, "t", priority=3, queue_name="cust-2")
    await add_job(pool, "t", priority=3, queue_name="cust-3")
    await add_job(pool, "t", priority=-10, flags=REPORTS_FLAGS)  # custom lane, whatever its priority
    await add_job(pool, "t", priority=-5, flags=["backfill:lane"])  # no lane named: by priority, like lane_of
    await add_job(pool, "t", priority=0, flags=["backfill:lane", "backfill:lane=exports"], run_at=later)
    locked = await add_job(pool, "t", priority=-5)
    exhausted = await add_job(pool, "t", priority=-5)
    await conn.execute(f"update {JOBS_TABLE} set locked_at = now(), locked_by = 'elsewhere' where id = $1", locked.id)
    await conn.execute(f"update {JOBS_TABLE} set attempts = max_attempts where id = $1", exhausted.id)

    snapshot = await collector.collect_once()

    def lane(kind: str, name: str) -> float | None:
        return sample(metrics, f"backfill_lane_{kind}", lane=name)

    def queue(kind: str, name: str) -> float | None:
        return sample(metrics, f"backfill_queue_{kind}", queue=name)

    assert (lane("ready_jobs", "fast"), lane("scheduled_jobs", "fast")) == (4, 0)
    assert (lane("ready_jobs", "bulk"), lane("scheduled_jobs", "bulk")) == (4, 2)
    assert (lane("ready_jobs", "reports"), lane("scheduled_jobs", "reports")) == (1, 0)
    assert (lane("ready_jobs", "other"), lane("scheduled_jobs", "other")) == (0, 1)  # "exports"
    fast_age = lane("oldest_ready_job_age_seconds", "fast")
    assert fast_age is not None and 120 <= fast_age < 180
    assert lane("oldest_ready_job_age_seconds", "other") == 0
    # Top two by ready jobs, then scheduled: cust-2 (2 ready), cust-1 (1 + 1); cust-3 is summed into "other".
    assert (queue("ready_jobs", "cust-2"), queue("scheduled_jobs", "cust-2")) == (2, 0)
    assert (queue("ready_jobs", "cust-1"), queue("scheduled_jobs", "cust-1")) == (1, 1)
    assert (queue("ready_jobs", "other"), queue("scheduled_jobs", "other")) == (1, 0)
    assert queue("ready_jobs", "cust-3") is None
    cust_2_age = queue("oldest_ready_job_age_seconds", "cust-2")
    assert cust_2_age is not None and 0 <= cust_2_age < 60
    assert sample(metrics, "backfill_dead_letter_jobs") == 0  # no backfill_dlq table in this database
    assert sample(metrics, "backfill_queue_stats_collected_timestamp_seconds") == snapshot.collected_at

    await conn.execute(f"delete from {JOBS_TABLE}")
    await collector.collect_once()
    for name in ("fast", "bulk", "reports", "other"):
        assert (lane("ready_jobs", name), lane("scheduled_jobs", name)) == (0, 0), name
        assert lane("oldest_ready_job_age_seconds", name) == 0, name
    for name in ("cust-1", "cust-2", "other"):
        assert (queue("ready_jobs", name), queue("scheduled_jobs", name)) == (0, 0), name

    collector.keep_emptied = 0  # past the window, emptied queues and unnamed lanes are no longer reported
    await collector.collect_once()
    assert queue("ready_jobs", "cust-2") is None
    assert queue("ready_jobs", "other") is None
    assert lane("ready_jobs", "other") is None
    assert lane("ready_jobs", "reports") == 0  # a named lane always is


async def test_the_dead_letter_gauge_counts_dead_rows_once_the_table_exists(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    metrics = BackfillMetrics(tasks=["mail", "quiet"])
    collector = QueueStatsCollector(pool, None, metrics)
    assert (await collector.collect_once()).dead_letters == 0

    # Stands in for the real dead-letter table: only its `task_identifier` and `state` columns matter here.
    assert await conn.fetchval("select to_regclass('graphile_worker.backfill_dlq')") is None
    await conn.execute(
        "create table graphile_worker.backfill_dlq"
        " (id bigserial primary key, task_identifier text not null, state text not null)"
    )
    await conn.execute(
        "insert into graphile_worker.backfill_dlq (task_identifier, state) values"
        " ('mail', 'dead'), ('mail', 'dead'), ('mail', 'requeued'), ('stranger', 'dead'), ('unnamed', 'dead')"
    )
    assert (await collector.collect_once()).dead_letters == 4
    assert sample(metrics, "backfill_dead_letter_jobs") == 4
    # By task, with the task label bounded like the counters': named tasks always (0 when none), the rest summed.
    assert sample(metrics, "backfill_dead_letter_jobs_by_task", task="mail") == 2
    assert sample(metrics, "backfill_dead_letter_jobs_by_task", task="quiet") == 0
    assert sample(metrics, "backfill_dead_letter_jobs_by_task", task="other") == 2
    assert sample(metrics, "backfill_dead_letter_jobs_by_task", task="stranger") is None


def test_a_private_registry_gets_process_gc_platform_and_build_info_collectors() -> None:
    metrics = BackfillMetrics()
    assert (sample(metrics, "process_cpu_seconds_total") or 0) > 0
    assert sample(metrics, "process_resident_memory_bytes") is not None
    assert sample(metrics, "python_gc_objects_collected_total", generation="0") is not None
    assert sample(metrics, "python_info", **_python_info()) == 1
    build = {
        "version": importlib.metadata.version("backfill"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "graphile_schema_revision": str(LATEST_REVISION),
    }
    assert sample(metrics, "backfill_build_info", **build) == 1


def test_a_shared_registry_keeps_its_own_process_collectors() -> None:
    # An application's registry that already has them (prometheus_client's default one does): registering them
    # a second time would raise "Duplicated timeseries".
    shared = CollectorRegistry()
    ProcessCollector(registry=shared)
    GCCollector(registry=shared)
    metrics = BackfillMetrics(shared)
    assert metrics.registry is shared
    assert sample(metrics, "backfill_build_info", **_build_labels(metrics)) == 1
    assert sample(metrics, "python_info", **_python_info()) is None  # not ours to add to someone else's registry


def test_lane_slots_sit_beside_busy_slots() -> None:
    metrics = BackfillMetrics(lanes=["fast", "bulk"])
    metrics.observe_worker(Events(), "fast", busy_slots=lambda: 2, slots=10)
    metrics.observe_worker(Events(), "fast", busy_slots=lambda: 1, slots=5)  # a second worker in the lane adds up
    stop = metrics.observe_worker(Events(), "bulk", busy_slots=lambda: 0, slots=4)
    assert sample(metrics, "backfill_lane_slots", lane="fast") == 15
    assert sample(metrics, "backfill_busy_slots", lane="fast") == 3
    assert sample(metrics, "backfill_lane_slots", lane="bulk") == 4
    stop()
    assert sample(metrics, "backfill_lane_slots", lane="bulk") is None


def _python_info() -> dict[str, str]:
    major, minor, patch = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }


def _build_labels(metrics: BackfillMetrics) -> dict[str, str]:
    [family] = [m for m in metrics.registry.collect() if m.name == "backfill_build"]
    return dict(family.samples[0].labels)


async def test_run_logs_a_failing_round_once_keeps_going_and_recovers(
    pool: asyncpg.Pool[Any], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = BackfillMetrics()
    collector = QueueStatsCollector(pool, SchemaName("not_yet"), metrics, interval=0.01)
    with caplog.at_level(logging.INFO, logger="backfill.metrics"):
        task = asyncio.create_task(collector.run())
        try:
            await wait_for(lambda: _true(collector.consecutive_failures >= 5), message="five failed rounds")
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "queue statistics failed" in warnings[0].getMessage()

            await migrate(pool, "not_yet")
            await wait_for(lambda: _true(metrics.queue_gauges.snapshot is not None), message="a round that works")
            assert not task.done()
            assert any("work again" in r.getMessage() for r in caplog.records)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert sample(metrics, "backfill_lane_ready_jobs", lane="bulk") == 0


async def _true(value: bool) -> bool:
    return value


async def test_serve_metrics_answers_a_scrape_on_a_free_port_and_closes() -> None:
    metrics = BackfillMetrics(tasks=["t"])
    metrics.job_enqueued("t", 0, None)
    server = serve_metrics(metrics.registry, host="127.0.0.1", port=0)
    try:
        assert server.port > 0
        body = await asyncio.to_thread(_get, server.url)
    finally:
        server.close()
    assert 'backfill_jobs_enqueued_total{lane="bulk",priority_band="bulk_default",task="t"} 1.0' in body
    for name in ("backfill_jobs_started_total", "backfill_job_duration_seconds", "backfill_lane_ready_jobs"):
        assert f"# TYPE {name}" in body
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_get, server.url)
    server.close()  # a second close does nothing


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()
