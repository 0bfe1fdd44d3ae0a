"""Timeouts: a handler past its task's or job's deadline is cancelled and its attempt failed; one that ignores
the cancellation (or is a thread) is reported stuck and its slot given up, so other jobs keep running."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import JobSpecError, TaskDefinitionError
from backfill.core.events import Event, Events
from backfill.core.jobs import MAX_TIMEOUT_SECONDS, JobSpec
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry, define_task
from tests.integration.worker_support.helpers import fast_options, job_row
from tests.support.waiting import wait_for_event

TIMEOUT = 0.2
GRACE = 0.2


def timeout_options(**overrides: Any) -> Any:
    return fast_options(cancel_grace_period=GRACE, **overrides)


async def clock(conn: asyncpg.Connection[Any]) -> datetime:
    value: datetime = await conn.fetchval("select clock_timestamp()")
    return value


def recording(*names: str) -> tuple[Events, list[Event]]:
    events = Events()
    seen: list[Event] = []
    for name in names:
        events.on(name, seen.append)
    return events, seen


async def test_a_task_timeout_cancels_the_handler_and_the_job_is_retried(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    cancelled = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("slow", timeout=TIMEOUT)
    async def slow(payload: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await add_job(pool, "slow", max_attempts=3)
    events, seen = recording("job:timeout", "job:stuck", "job:error")
    started = time.monotonic()
    summary = await Worker(database_url, tasks=registry, options=timeout_options(), events=events).run_once()
    elapsed = time.monotonic() - started
    now = await clock(conn)

    assert cancelled.is_set()
    assert elapsed < 5
    assert (summary.timed_out, summary.failed, summary.succeeded) == (1, 1, 0)
    assert [(event.name, event["job"].id) for event in seen] == [("job:timeout", job.id), ("job:error", job.id)]
    assert seen[0]["timeout"] == TIMEOUT
    row = await job_row(conn, job.id)
    assert row is not None
    assert "timed out" in row["last_error"]
    assert "stuck" not in row["last_error"]
    assert row["attempts"] == 1
    assert row["locked_by"] is None
    assert row["run_at"] > now  # retried later, with Graphile's backoff


async def test_a_job_timeout_overrides_a_task_without_one_and_travels_as_a_flag(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    registry = TaskRegistry()

    @registry.task("unbounded")
    async def unbounded(payload: dict[str, Any]) -> None:
        await asyncio.sleep(30)

    job = await add_job(pool, "unbounded", timeout=TIMEOUT)
    assert job.timeout == TIMEOUT
    flags = await conn.fetchval("select flags from graphile_worker._private_jobs where id = $1", job.id)
    assert "backfill:timeout=0.2" in flags

    events, seen = recording("job:timeout")
    summary = await Worker(database_url, tasks=registry, options=timeout_options(), events=events).run_once()

    assert summary.timed_out == 1
    assert [event["timeout"] for event in seen] == [TIMEOUT]
    row = await job_row(conn, job.id)
    assert row is not None
    assert "timed out" in row["last_error"]
    assert "0.2s" in row["last_error"]


async def test_a_longer_job_timeout_overrides_a_shorter_task_timeout(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    registry = TaskRegistry()

    @registry.task("bounded", timeout=0.1)
    async def bounded(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.4)

    job = await add_job(pool, "bounded", timeout=10)
    summary = await Worker(database_url, tasks=registry, options=timeout_options()).run_once()

    assert (summary.succeeded, summary.timed_out) == (1, 0)
    assert await job_row(conn, job.id) is None


async def test_an_async_handler_that_swallows_cancellation_is_stuck_and_its_slot_freed(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    release = asyncio.Event()
    ended = asyncio.Event()
    next_ran = asyncio.Event()
    stuck_running_when_next_ran: list[bool] = []
    registry = TaskRegistry()

    @registry.task("stubborn", timeout=TIMEOUT)
    async def stubborn(payload: dict[str, Any]) -> None:
        try:
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()
        finally:
            ended.set()

    @registry.task("next")
    async def next_job(payload: dict[str, Any]) -> None:
        stuck_running_when_next_ran.append(not ended.is_set())
        next_ran.set()

    stuck_job = await add_job(pool, "stubborn", priority=-1)
    other = await add_job(pool, "next", priority=0)
    events, seen = recording("job:timeout", "job:stuck")
    try:
        started = time.monotonic()
        summary = await Worker(
            database_url, tasks=registry, options=timeout_options(concurrency=1), events=events
        ).run_once()
        elapsed = time.monotonic() - started
        await wait_for_event(next_ran, timeout=1, message="the next job ran")
    finally:
        release.set()
    await wait_for_event(ended, timeout=5, message="the stuck handler ends once released")

    assert stuck_running_when_next_ran == [True]
    assert elapsed < TIMEOUT + GRACE + 2
    assert sorted((event.name, event["job"].id) for event in seen) == [
        ("job:stuck", stuck_job.id),
        ("job:timeout", stuck_job.id),
    ]
    assert (summary.timed_out, summary.failed, summary.succeeded) == (1, 1, 1)
    row = await job_row(conn, stuck_job.id)
    assert row is not None
    assert "timed out" in row["last_error"] and "stuck" in row["last_error"]
    assert (row["attempts"], row["locked_by"]) == (1, None)
    assert await job_row(conn, other.id) is None


async def test_a_blocked_synchronous_handler_is_stuck_and_other_sync_jobs_still_run(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    gate = threading.Event()
    ran: list[str] = []
    registry = TaskRegistry()

    @registry.task("blocked", timeout=TIMEOUT)
    def blocked(payload: dict[str, Any]) -> None:
        gate.wait(30)

    @registry.task("quick_sync")
    def quick_sync(payload: dict[str, Any]) -> None:
        ran.append(payload["name"])

    stuck_job = await add_job(pool, "blocked", priority=-1)
    await add_job(pool, "quick_sync", {"name": "a"})
    await add_job(pool, "quick_sync", {"name": "b"})
    events, seen = recording("job:stuck")
    try:
        summary = await Worker(
            database_url, tasks=registry, options=timeout_options(concurrency=1), events=events
        ).run_once()
        still_blocked = not gate.is_set()
    finally:
        gate.set()

    assert still_blocked
    assert sorted(ran) == ["a", "b"]
    assert [event["job"].id for event in seen] == [stuck_job.id]
    assert (summary.timed_out, summary.failed, summary.succeeded) == (1, 1, 2)
    row = await job_row(conn, stuck_job.id)
    assert row is not None
    assert "timed out" in row["last_error"] and "stuck" in row["last_error"]
    assert (row["attempts"], row["locked_by"]) == (1, None)


@pytest.mark.parametrize("bad", [0, -1, 0.0, MAX_TIMEOUT_SECONDS * 2, float("inf"), float("nan"), True, "5"])
def test_a_job_spec_timeout_outside_the_range_names_the_field(bad: Any) -> None:
    with pytest.raises(JobSpecError, match="timeout") as raised:
        JobSpec("t", timeout=bad)
    assert raised.value.field == "timeout"


def test_a_job_spec_timeout_replaces_any_timeout_flag_and_keeps_the_others() -> None:
    spec = JobSpec("t", flags=["a", "backfill:timeout=9"], timeout=1.5)
    assert spec.flags == ("a", "backfill:timeout=1.5")


@pytest.mark.parametrize("bad", [-1, 0, MAX_TIMEOUT_SECONDS + 1])
def test_a_task_timeout_outside_the_range_is_a_task_definition_error(bad: float) -> None:
    async def handler(payload: Any) -> None:
        return None

    with pytest.raises(TaskDefinitionError, match="timeout"):
        define_task("t", handler, timeout=bad)
    with pytest.raises(TaskDefinitionError, match="timeout"):
        TaskRegistry().task("t", timeout=bad)(handler)
