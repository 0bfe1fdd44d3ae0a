"""Pauses and cancellations against a real PostgreSQL, with a real WorkerRunner in this process.

A pause is applied by the runner's control watcher; the tests wait for the watcher to have applied it (the
lane's FetchPause), then check what the runner does. "Paused work did not start" is checked after work enqueued
after it (and claimable by the same fetch) has finished, plus two more watcher rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.client.sync_client import SyncBackfillClient
from backfill.control import (
    CancelOutcome,
    CancelState,
    ControlWatcher,
    PauseKind,
    cancel_jobs,
    cancellations,
    list_pauses,
    pause,
    resume,
)
from backfill.core import ConfigurationError, JobContext, SchemaName, TaskRegistry
from backfill.core.errors import JobSpecError
from backfill.migrations import migrate_all
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"
BY = "test@control"


class Ledger:
    """What the handlers did: started and finished job names, and the async handler's cancellation."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        self.thread_release = threading.Event()
        self.aborted: list[str] = []


def _registry(ledger: Ledger) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("control.quick")
    async def quick(payload: Any) -> None:
        ledger.started.append(payload["name"])
        ledger.finished.append(payload["name"])

    @registry.task("control.other")
    async def other(payload: Any) -> None:
        ledger.started.append(payload["name"])
        ledger.finished.append(payload["name"])

    @registry.task("control.blocking")
    async def blocking(payload: Any) -> None:
        ledger.started.append(payload["name"])
        try:
            await ledger.release.wait()
        except asyncio.CancelledError:
            ledger.cancelled.append(payload["name"])
            raise
        ledger.finished.append(payload["name"])

    @registry.task("control.sync")
    def sync_blocking(payload: Any, ctx: JobContext) -> None:
        ledger.started.append(payload["name"])
        # Cooperative: a synchronous handler watches the abort signal its context carries.
        while not ledger.thread_release.is_set():
            if ctx.abort_signal.is_set():
                ledger.aborted.append(payload["name"])
                return
            time.sleep(0.01)
        ledger.finished.append(payload["name"])

    return registry


@pytest.fixture
async def migrated(database_url: str, pool: asyncpg.Pool[Any]) -> str:
    await migrate_all(pool, SCHEMA)
    return database_url


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
async def runner(migrated: str, ledger: Ledger) -> AsyncIterator[WorkerRunner]:
    settings = BackfillSettings.load(
        env_file=None,
        database_url=migrated,
        fast_queue_concurrency=2,
        bulk_queue_concurrency=1,
        poll_interval_ms=1000,
        shutdown_grace_seconds=5.0,
        control_poll_seconds=0.2,
        dlq_sweep_interval_seconds=0.2,
    )
    runner = WorkerRunner(settings, tasks=_registry(ledger))
    async with runner:
        yield runner


async def _applied(runner: WorkerRunner, lane: str, **expected: Any) -> None:
    """Until the lane's worker has the pause expected (fields of FetchPause)."""

    async def matches() -> bool:
        pause_now = runner.workers[lane].fetch_pause
        return all(getattr(pause_now, field) == value for field, value in expected.items())

    await wait_for(matches, timeout=5, message=f"lane {lane} never had {expected}")


async def _two_more_rounds(runner: WorkerRunner) -> None:
    start = runner.control.rounds
    await wait_for(lambda: _true_when(runner.control.rounds >= start + 2), timeout=5)


async def _true_when(value: bool) -> bool:
    return value


async def _job_row(pool: asyncpg.Pool[Any], job_id: int) -> asyncpg.Record | None:
    return await pool.fetchrow(f"select id, locked_by, attempts from {JOBS} where id = $1", job_id)


async def test_a_paused_task_stays_queued_while_others_run_and_runs_once_resumed(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    paused = await pause(pool, SCHEMA, task="control.quick", by=BY, reason="incident 42")
    assert (paused.kind, paused.name, paused.paused_by, paused.reason) == (
        PauseKind.TASK,
        "control.quick",
        BY,
        "incident 42",
    )
    await _applied(runner, "bulk", tasks=frozenset({"control.quick"}))
    client = BackfillClient(pool)
    held = await client.enqueue_bulk("control.quick", {"name": "held"})
    await client.enqueue_bulk("control.other", {"name": "free"})
    await wait_for(lambda: _true_when("free" in ledger.finished))
    await _two_more_rounds(runner)
    assert "held" not in ledger.started
    row = await _job_row(pool, held.id)
    assert row is not None and row["locked_by"] is None and row["attempts"] == 0

    assert (await resume(pool, SCHEMA, task="control.quick")) is not None
    await wait_for(lambda: _true_when("held" in ledger.finished))
    assert await resume(pool, SCHEMA, task="control.quick") is None  # not paused any more: nothing to lift


async def test_a_paused_named_queue_holds_its_jobs_only(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    await pause(pool, SCHEMA, queue="tenant-7", by=BY)
    await _applied(runner, "bulk", queues=frozenset({"tenant-7"}))
    client = BackfillClient(pool)
    held = await client.enqueue_bulk("control.quick", {"name": "in-queue"}, queue="tenant-7")
    await client.enqueue_bulk("control.quick", {"name": "other-queue"}, queue="tenant-8")
    await client.enqueue_bulk("control.quick", {"name": "no-queue"})
    await wait_for(lambda: _true_when({"other-queue", "no-queue"} <= set(ledger.finished)))
    await _two_more_rounds(runner)
    assert "in-queue" not in ledger.started
    assert (await _job_row(pool, held.id)) is not None
    await resume(pool, SCHEMA, queue="tenant-7")
    await wait_for(lambda: _true_when("in-queue" in ledger.finished))


async def test_a_paused_lane_claims_nothing_and_the_other_lanes_go_on(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    await pause(pool, SCHEMA, lane="fast", by=BY)
    await _applied(runner, "fast", everything=True)
    assert not runner.workers["bulk"].fetch_pause.everything
    client = BackfillClient(pool)
    await client.enqueue_fast("control.quick", {"name": "fast"})
    await client.enqueue_bulk("control.quick", {"name": "bulk"})
    await wait_for(lambda: _true_when("bulk" in ledger.finished))
    await _two_more_rounds(runner)
    assert "fast" not in ledger.started
    assert [(p.kind, p.name) for p in await list_pauses(pool, SCHEMA)] == [(PauseKind.LANE, "fast")]
    await resume(pool, SCHEMA, lane="fast")
    await wait_for(lambda: _true_when("fast" in ledger.finished))


async def test_cancelling_a_queued_job_deletes_it_and_records_who_and_when(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    await pause(pool, SCHEMA, task="control.quick", by=BY)  # so that it stays queued until we cancel it
    await _applied(runner, "bulk", tasks=frozenset({"control.quick"}))
    job = await BackfillClient(pool).enqueue_bulk("control.quick", {"name": "never"})
    [answer] = await cancel_jobs(pool, SCHEMA, [job.id], by=BY, reason="not wanted")
    assert (answer.job_id, answer.outcome) == (job.id, CancelOutcome.CANCELLED)
    assert await _job_row(pool, job.id) is None
    [record] = await cancellations(pool, SCHEMA, job_ids=[job.id])
    assert (record.state, record.requested_by, record.reason, record.task_identifier) == (
        CancelState.CANCELLED,
        BY,
        "not wanted",
        "control.quick",
    )
    assert record.ended_at is not None and record.ended_at >= record.requested_at
    await resume(pool, SCHEMA, task="control.quick")
    [again] = await cancel_jobs(pool, SCHEMA, [job.id], by=BY)
    assert again.outcome is CancelOutcome.ALREADY and "cancelled earlier" in again.detail
    await _two_more_rounds(runner)
    assert "never" not in ledger.started
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq") == 0


async def test_cancelling_a_running_async_job_cancels_its_handler_and_never_retries_it(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("control.blocking", {"name": "long"}, max_attempts=5)
    await wait_for(lambda: _true_when("long" in ledger.started))
    [answer] = await cancel_jobs(pool, SCHEMA, [job.id], by=BY, reason="stuck on a remote")
    assert answer.outcome is CancelOutcome.REQUESTED and answer.worker_id == runner.workers["bulk"].worker_id
    await wait_for(lambda: _true_when("long" in ledger.cancelled))
    await wait_for(lambda: pool.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job.id))
    await wait_for(lambda: _state_of(pool, job.id, CancelState.CANCELLED))
    assert runner.summary.cancelled == 1 and runner.summary.failed == 0
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq") == 0
    # The slot is free again: the next job runs.
    await BackfillClient(pool).enqueue_bulk("control.quick", {"name": "next"})
    await wait_for(lambda: _true_when("next" in ledger.finished))


async def test_cancelling_a_running_sync_job_sets_its_abort_signal(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    job = await BackfillClient(pool).enqueue_bulk("control.sync", {"name": "thread"})
    await wait_for(lambda: _true_when("thread" in ledger.started))
    [answer] = await cancel_jobs(pool, SCHEMA, [job.id], by=BY)
    assert answer.outcome is CancelOutcome.REQUESTED
    await wait_for(lambda: _true_when("thread" in ledger.aborted))
    await wait_for(lambda: _state_of(pool, job.id, CancelState.CANCELLED))
    assert await _job_row(pool, job.id) is None
    ledger.thread_release.set()


async def _state_of(pool: asyncpg.Pool[Any], job_id: int, state: CancelState) -> bool:
    found = await cancellations(pool, SCHEMA, job_ids=[job_id])
    return bool(found) and found[0].state is state


async def test_a_request_for_a_job_that_ended_first_is_resolved_as_finished(
    runner: WorkerRunner, pool: asyncpg.Pool[Any]
) -> None:
    """The worker named in the request no longer holds the job (it finished): the runners' poll settles it."""
    worker_id = runner.workers["bulk"].worker_id
    await pool.execute(
        "insert into graphile_worker.backfill_cancellations (job_id, task_identifier, priority, attempts, "
        "max_attempts, state, worker_id, requested_by) values (999999, 'control.quick', 0, 1, 25, 'requested', $1, $2)",
        worker_id,
        BY,
    )
    await wait_for(lambda: _state_of(pool, 999999, CancelState.FINISHED))


async def test_who_holds_a_job_decides_the_answer(migrated: str, pool: asyncpg.Pool[Any]) -> None:
    client = BackfillClient(pool)
    node = await client.enqueue_bulk("control.quick", {"name": "node"})
    dead = await client.enqueue_bulk("control.quick", {"name": "dead"})
    await pool.execute(f"update {JOBS} set locked_by = 'node-worker-1', locked_at = now() where id = $1", node.id)
    await pool.execute(f"update {JOBS} set locked_by = 'gone', locked_at = now() where id = $1", dead.id)
    await pool.execute(
        "insert into graphile_worker.backfill_workers (worker_id, hostname, pid, dead_after, last_heartbeat_at) "
        "values ('gone', 'h', 1, interval '15 seconds', now() - interval '1 minute')"
    )
    answers = await cancel_jobs(pool, SCHEMA, [dead.id, node.id, 10**12, node.id], by=BY)
    assert [(a.job_id, a.outcome) for a in answers] == [
        (node.id, CancelOutcome.REFUSED),
        (dead.id, CancelOutcome.CANCELLED),
        (10**12, CancelOutcome.NOT_FOUND),
    ]
    assert "not a backfill worker" in answers[0].detail and "gone" in answers[1].detail
    assert await _job_row(pool, node.id) is not None  # refused: untouched
    assert await _job_row(pool, dead.id) is None


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ("12", "not a string"),
        ([0], "is not a job id"),
        ([True], "is not a job id"),
        (["7"], "is not a job id"),
        ([2**63], "is not a job id"),
        (list(range(1, 10_002)), "at most 10000"),
    ],
)
async def test_bad_job_ids_are_refused_before_anything_changes(
    migrated: str, pool: asyncpg.Pool[Any], ids: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        await cancel_jobs(pool, SCHEMA, ids, by=BY)
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_cancellations") == 0


async def test_bad_pause_targets_are_refused(migrated: str, pool: asyncpg.Pool[Any]) -> None:
    with pytest.raises(ConfigurationError, match="exactly one of lane, queue or task"):
        await pause(pool, SCHEMA, by=BY)
    with pytest.raises(ConfigurationError, match="exactly one of lane, queue or task"):
        await pause(pool, SCHEMA, queue="a", task="b", by=BY)
    with pytest.raises(ConfigurationError, match="task name"):
        await pause(pool, SCHEMA, task="x" * 129, by=BY)
    with pytest.raises(ConfigurationError, match=r"no such lane.*fast, bulk"):
        await pause(pool, SCHEMA, lane="reprots", by=BY)
    with pytest.raises(JobSpecError, match="lane"):
        await pause(pool, SCHEMA, lane="Bad Lane!", by=BY)
    assert await list_pauses(pool, SCHEMA) == []


async def test_the_clients_offer_the_same_controls(migrated: str, pool: asyncpg.Pool[Any]) -> None:
    async with BackfillClient(migrated) as client:
        made = await client.pause(task="report", reason="backlog", by="me")
        assert [(p.kind, p.name, p.paused_by) for p in await client.pauses()] == [(PauseKind.TASK, "report", "me")]
        assert (await client.resume(task="report")) == made
        job = await client.enqueue_bulk("report", {})
        [answer] = await client.cancel([job.id], reason="dup")
        assert answer.outcome is CancelOutcome.CANCELLED
        [record] = await client.cancellations([job.id])
        assert (record.requested_by, record.reason) == ("python", "dup")

    def blocking() -> None:
        with SyncBackfillClient(migrated) as sync:
            sync.pause(lane="bulk", by="cron")
            assert [p.name for p in sync.pauses()] == ["bulk"]
            assert sync.resume(lane="bulk") is not None
            queued = sync.enqueue_bulk("report", {})
            assert [a.outcome for a in sync.cancel([queued.id, queued.id])] == [CancelOutcome.CANCELLED]
            assert sync.cancellations(state="cancelled", limit=1)[0].job_id == queued.id

    await asyncio.to_thread(blocking)


async def test_the_watcher_reconnects_when_its_connection_dies(
    runner: WorkerRunner, pool: asyncpg.Pool[Any], ledger: Ledger
) -> None:
    """Its backend terminated (a failover, an idle-session killer): it connects again and reads everything."""
    # This database's only: other tests' runners (other databases, other processes) have watchers too.
    watcher = (
        "select pid from pg_stat_activity where application_name = 'backfill-control' and datname = current_database()"
    )
    [row] = await wait_for(lambda: pool.fetch(watcher))
    await pool.execute("select pg_terminate_backend($1)", row["pid"])
    await pause(pool, SCHEMA, task="control.quick", by=BY)
    await _applied(runner, "bulk", tasks=frozenset({"control.quick"}))
    [again] = await pool.fetch(watcher)
    assert again["pid"] != row["pid"]


async def test_run_once_leaves_paused_work_queued(migrated: str, pool: asyncpg.Pool[Any], ledger: Ledger) -> None:
    await pause(pool, SCHEMA, task="control.quick", by=BY)
    client = BackfillClient(pool)
    held = await client.enqueue_bulk("control.quick", {"name": "held"})
    await client.enqueue_bulk("control.other", {"name": "free"})
    settings = BackfillSettings.load(env_file=None, database_url=migrated, dlq_sweep_interval_seconds=0.2)
    summary = await WorkerRunner(settings, tasks=_registry(ledger)).run_once()
    assert (summary.succeeded, ledger.finished) == (1, ["free"])
    assert await _job_row(pool, held.id) is not None


async def test_the_watcher_outlives_a_database_it_cannot_reach(caplog: pytest.LogCaptureFixture) -> None:
    """An outage at connect is retried with backoff: a watcher that died of it would leave pauses unapplied."""
    caplog.set_level("WARNING", logger="backfill.control")
    watcher = ControlWatcher("postgresql://postgres@127.0.0.1:1/nowhere", SCHEMA, dict, poll_interval=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        await wait_for(lambda: _true_when(any("control connection" in r.getMessage() for r in caplog.records)))
        assert not task.done(), task
        assert "nowhere" in caplog.text and "postgres@" not in caplog.text.replace("postgres@127", "")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
