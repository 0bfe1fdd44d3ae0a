"""WorkerRunner end to end: lanes reserve capacity, background and once modes, DLQ and policies wired in."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.errors import ConfigurationError
from backfill.core.hooks import Hooks, RetryDecision
from backfill.core.run.context import JobContext
from backfill.core.tasks import TaskRegistry
from backfill.priorities import Priority
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.defaults import TASK_DEFAULTS, task
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
DLQ = "graphile_worker.backfill_dlq"


def _settings(database_url: str, **overrides: Any) -> BackfillSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "fast_queue_concurrency": 2,
        "bulk_queue_concurrency": 2,
        "poll_interval_ms": 1000,  # long: wake-ups must come from LISTEN/NOTIFY, not from polling
        "shutdown_grace_seconds": 5.0,
        "dlq_sweep_interval_seconds": 0.2,
        "queue_stats_interval_seconds": 0.2,
    }
    values.update(overrides)
    return BackfillSettings.load(env_file=None, **values)


class Gate:
    """Handlers that block until released, recording when each started and how many ran at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: dict[str, float] = {}
        self.running = 0
        self.most_at_once = 0

    def handler(self, *, block: bool) -> Callable[[Any], Any]:
        async def handle(payload: Any) -> None:
            self.started[payload["name"]] = time.monotonic()
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            try:
                if block:
                    await self.release.wait()
            finally:
                self.running -= 1

        return handle


async def test_a_fast_job_starts_within_100ms_while_every_bulk_slot_is_busy(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    gate = Gate()
    registry = TaskRegistry()
    registry.register("long_report", gate.handler(block=True))
    registry.register("password_reset", gate.handler(block=False))
    client = BackfillClient(pool)
    async with WorkerRunner(_settings(database_url), tasks=registry) as runner:
        for n in range(4):  # twice the bulk slots: two run, two wait
            await client.enqueue_bulk("long_report", {"name": f"bulk-{n}"})
        await wait_for(lambda: asyncio.sleep(0, len(gate.started) == 2), timeout=5)
        assert runner.workers["bulk"].busy_slots == 2

        enqueued = time.monotonic()
        await client.enqueue_fast("password_reset", {"name": "fast"})
        await wait_for(lambda: asyncio.sleep(0, "fast" in gate.started), timeout=5)
        assert gate.started["fast"] - enqueued < 0.1
        # The fast lane's free slots did not take the waiting bulk jobs: capacity is per lane.
        assert sorted(gate.started) == ["bulk-0", "bulk-1", "fast"]
        gate.release.set()
        await wait_for(lambda: pool.fetchval(f"select count(*) = 0 from {JOBS}"), timeout=10)


async def test_a_custom_lane_runs_only_its_jobs_at_its_own_concurrency(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    reports, others = Gate(), Gate()
    registry = TaskRegistry()
    registry.register("report", reports.handler(block=True))
    registry.register("other", others.handler(block=False))
    client = BackfillClient(pool)
    settings = _settings(database_url, lanes="reports=1")
    async with WorkerRunner(settings, tasks=registry) as runner:
        assert [lane.name for lane in runner.lanes] == ["fast", "bulk", "reports"]
        for n in range(3):
            await client.enqueue("report", {"name": f"r{n}"}, lane="reports", priority=Priority.EMERGENCY)
        await client.enqueue_bulk("other", {"name": "o"})
        await wait_for(lambda: asyncio.sleep(0, "o" in others.started and len(reports.started) == 1), timeout=5)
        # Fast slots are free and the report jobs are urgent, but only the reports lane may run them, one at a time.
        assert runner.workers["fast"].busy_slots == 0
        reports.release.set()
        await wait_for(lambda: pool.fetchval(f"select count(*) = 0 from {JOBS}"), timeout=10)
    assert reports.most_at_once == 1
    assert sorted(reports.started) == ["r0", "r1", "r2"]


async def test_run_once_drains_every_lane_and_dead_letters_what_failed_for_good(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    registry = TaskRegistry()
    ran: list[str] = []

    @registry.task("fine")
    async def fine(payload: Any) -> None:
        ran.append(payload["name"])

    @registry.task("doomed")
    async def doomed(payload: Any) -> None:
        raise ValueError("never works")

    client = BackfillClient(pool)
    await client.enqueue_fast("fine", {"name": "a"})
    await client.enqueue_bulk("fine", {"name": "b"})
    await client.enqueue("fine", {"name": "c"}, lane="exports")
    doomed_job = await client.enqueue_bulk("doomed", {"name": "d"}, retry_policy="fast", max_attempts=1)

    runner = WorkerRunner(_settings(database_url, lanes="exports=1"), tasks=registry)
    summary = await runner.run_once()

    assert sorted(ran) == ["a", "b", "c"]
    assert (summary.succeeded, summary.failed, summary.permanently_failed) == (3, 1, 1)
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0
    entry = await pool.fetchrow(f"select job_id, task_identifier, last_error from {DLQ}")
    assert entry is not None
    assert (entry["job_id"], entry["task_identifier"], entry["last_error"]) == (
        doomed_job.id,
        "doomed",
        "ValueError: never works",
    )
    labels = {"task": "doomed", "lane": "bulk", "priority_band": "bulk_default"}
    assert runner.metrics.registry.get_sample_value("backfill_jobs_dead_lettered_total", labels) == 1.0
    assert runner.metrics.registry.get_sample_value("backfill_jobs_succeeded_total", {**labels, "task": "fine"}) == 1.0


async def test_policies_apply_through_the_runner_and_permanent_errors_skip_retries(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    registry = TaskRegistry()

    @registry.task("flaky")
    async def flaky(payload: Any) -> None:
        raise RuntimeError("try later")

    client = BackfillClient(pool)
    job = await client.enqueue_bulk("flaky", {}, retry_policy="conservative")
    await WorkerRunner(_settings(database_url), tasks=registry).run_once()
    row = await pool.fetchrow(
        f"select j.attempts, extract(epoch from j.run_at - e.failed_at)::float8 as gap from {JOBS} j"
        " join graphile_worker.backfill_job_errors e on e.job_id = j.id where j.id = $1",
        job.id,
    )
    assert row is not None
    assert row["attempts"] == 1
    assert 4.0 <= row["gap"] <= 6.0  # conservative: 5 s +-20%


async def test_background_mode_stops_cleanly_and_leaves_nothing_locked(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    registry = TaskRegistry()
    done = asyncio.Event()

    @registry.task("ping")
    async def ping(payload: Any) -> None:
        done.set()

    runner = WorkerRunner(_settings(database_url), tasks=registry)
    await runner.start()
    try:
        await BackfillClient(pool).enqueue_fast("ping", {})
        await asyncio.wait_for(done.wait(), 5)
        workers = await pool.fetchval("select count(*) from graphile_worker.backfill_workers")
        assert workers == 2  # one registered worker per lane
    finally:
        summary = await runner.stop()
    assert summary.succeeded == 1
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_workers") == 0
    assert await pool.fetchval(f"select count(*) from {JOBS} where locked_by is not null") == 0


def test_a_runner_without_tasks_says_how_to_register_them(database_url: str) -> None:
    with pytest.raises(ConfigurationError, match="no tasks to run"):
        WorkerRunner(_settings(database_url), tasks=TaskRegistry())


async def test_a_runner_without_database_url_names_the_variable() -> None:
    registry = TaskRegistry()
    registry.register("x", lambda payload: None)
    runner = WorkerRunner(BackfillSettings.load(env_file=None, database_url=None), tasks=registry)
    with pytest.raises(ConfigurationError, match=r"^DATABASE_URL: not set"):
        await runner.run_once()


def test_a_pool_too_small_for_the_lanes_names_the_variable(database_url: str) -> None:
    registry = TaskRegistry()
    registry.register("x", lambda payload: None)
    with pytest.raises(ConfigurationError, match=r"^BACKFILL_MAX_POOL_SIZE: 4 is too small for 3 lanes"):
        WorkerRunner(_settings(database_url, max_pool_size=4, lanes="reports=1"), tasks=registry)


def test_a_malformed_crontab_stops_the_runner_before_it_connects(database_url: str) -> None:
    registry = TaskRegistry()
    registry.register("x", lambda payload: None)
    with pytest.raises(ConfigurationError, match="crontab line 2"):
        WorkerRunner(_settings(database_url), tasks=registry, crontab="* * * * * x\nnot a line")


async def test_a_retry_planner_of_the_callers_own_stays_in_charge(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    registry = TaskRegistry()

    @registry.task("flaky")
    async def flaky(payload: Any) -> None:
        raise RuntimeError("x")

    hooks = Hooks(retry_planner=lambda job, error: RetryDecision(delay=77.0))
    await BackfillClient(pool).enqueue_bulk("flaky", {})
    await WorkerRunner(_settings(database_url), tasks=registry, hooks=hooks).run_once()
    gap = await pool.fetchval(
        f"select extract(epoch from j.run_at - e.failed_at)::float8 from {JOBS} j"
        " join graphile_worker.backfill_job_errors e on e.job_id = j.id"
    )
    assert gap == pytest.approx(77.0, abs=1e-3)


async def test_client_migrate_installs_everything_a_worker_needs(empty_database_url: str) -> None:
    async with BackfillClient(empty_database_url) as client:
        await client.migrate()
        await client.migrate()  # idempotent
        job = await client.enqueue_fast("anything", {})
    connection = await asyncpg.connect(empty_database_url)
    try:
        tables = {
            row["relname"]
            for row in await connection.fetch(
                "select relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = 'graphile_worker' and c.relkind = 'r'"
            )
        }
        assert {"_private_jobs", "backfill_workers", "backfill_job_errors", "backfill_dlq"} <= tables
        assert await connection.fetchval(f"select count(*) from {JOBS} where id = $1", job.id) == 1
    finally:
        await connection.close()


async def test_jobs_enqueued_from_handlers_get_the_layers_defaults(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    registry = TaskRegistry()
    children: list[int] = []

    @registry.task("parent")
    async def parent(payload: Any, ctx: JobContext) -> None:
        child = await ctx.add_job("runner.child", {})
        assert child is not None
        children.append(child.id)
        explicit = await ctx.add_job("runner.child", {}, max_attempts=2, priority=-3)
        assert explicit is not None
        children.append(explicit.id)

    @task("runner.child", registry=registry, lane="reports", retry_policy="aggressive", priority=4)
    async def child(payload: Any) -> None:
        return None

    try:
        await BackfillClient(pool).enqueue_bulk("parent", {})
        await WorkerRunner(_settings(database_url), tasks=registry).run_once()
    finally:
        TASK_DEFAULTS.pop("runner.child", None)
    rows = [
        await pool.fetchrow(f"select priority, max_attempts, flags::text as flags from {JOBS} where id = $1", job_id)
        for job_id in children
    ]
    assert [(row["priority"], row["max_attempts"]) for row in rows if row is not None] == [(4, 12), (-3, 2)]
    for row in rows:
        assert row is not None
        assert set(json.loads(row["flags"])) == {"backfill:retry=aggressive", "backfill:lane", "backfill:lane=reports"}


def test_a_task_in_a_lane_this_runner_does_not_run_is_reported(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = TaskRegistry()

    @task("runner.exporter", registry=registry, lane="exports")
    async def exporter(payload: Any) -> None:
        return None

    try:
        with caplog.at_level("WARNING", logger="backfill.runner"):
            WorkerRunner(_settings(database_url, lanes="reports=1"), tasks=registry)
    finally:
        TASK_DEFAULTS.pop("runner.exporter", None)
    assert "task runner.exporter runs in lane 'exports', which this runner does not run" in caplog.text
