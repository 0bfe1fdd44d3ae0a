"""A worker's events: the job:* sequence for each outcome, worker:create/stop, and listeners that break."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import PermanentFailure
from backfill.core.events import Event, Events
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_count, job_row, running
from tests.support.waiting import wait_for, wait_for_event


def outcome_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: dict[str, Any]) -> str:
        return "done"

    @registry.task("retry")
    async def retry(payload: dict[str, Any]) -> None:
        raise RuntimeError("try again later")

    @registry.task("doomed")
    async def doomed(payload: dict[str, Any]) -> None:
        raise PermanentFailure("never going to work")

    return registry


def job_events(seen: list[Event], job_id: int) -> list[str]:
    return [event.name for event in seen if "job" in event.data and event["job"].id == job_id]


async def test_each_outcome_emits_its_job_events_with_the_job_and_error(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ok = await add_job(pool, "ok")
    retry = await add_job(pool, "retry", max_attempts=3)
    last = await add_job(pool, "retry", max_attempts=1)
    doomed = await add_job(pool, "doomed", max_attempts=5)
    events = Events()
    seen: list[Event] = []
    events.on("*", seen.append)

    worker = Worker(database_url, tasks=outcome_registry(), options=fast_options(), events=events)
    summary = await worker.run_once()

    assert (summary.succeeded, summary.failed, summary.permanently_failed) == (1, 3, 2)
    assert job_events(seen, ok.id) == ["job:start", "job:success", "job:complete"]
    assert job_events(seen, retry.id) == ["job:start", "job:error", "job:complete"]
    assert job_events(seen, last.id) == ["job:start", "job:error", "job:failed", "job:complete"]
    assert job_events(seen, doomed.id) == ["job:start", "job:error", "job:failed", "job:complete"]

    by_name = {(event.name, event["job"].id): event for event in seen if "job" in event.data}
    assert by_name["job:start", ok.id]["job"].attempts == 1
    assert by_name["job:success", ok.id]["duration"] >= 0
    assert by_name["job:complete", ok.id]["error"] is None
    retry_error = by_name["job:error", retry.id]["error"]
    assert isinstance(retry_error, RuntimeError) and str(retry_error) == "try again later"
    assert by_name["job:complete", retry.id]["error"] is retry_error
    assert str(by_name["job:failed", last.id]["error"]) == "try again later"
    assert isinstance(by_name["job:failed", doomed.id]["error"], PermanentFailure)
    assert all(event["worker_id"] == worker.worker_id for event in seen)

    # The observed path wrote the same results as the fast one would have.
    assert await job_row(conn, ok.id) is None
    retry_row = await job_row(conn, retry.id)
    assert retry_row is not None
    assert (retry_row["attempts"], retry_row["last_error"], retry_row["locked_by"]) == (
        1,
        "RuntimeError: try again later",
        None,
    )
    doomed_row = await job_row(conn, doomed.id)
    assert doomed_row is not None
    assert (doomed_row["attempts"], doomed_row["last_error"]) == (5, "never going to work")


async def test_worker_create_comes_first_and_worker_stop_last_with_the_summary(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    await add_job(pool, "ok")
    events = Events()
    seen: list[Event] = []
    events.on("*", seen.append)

    worker = Worker(database_url, tasks=outcome_registry(), options=fast_options(), events=events)
    summary = await worker.run_once()

    names = [event.name for event in seen]
    assert names[0] == "worker:create"
    assert seen[0]["worker_id"] == worker.worker_id
    assert set(seen[0]["tasks"]) == {"ok", "retry", "doomed"}
    assert names[-1] == "worker:stop"
    assert seen[-1]["summary"] is summary
    assert seen[-1]["error"] is None
    assert names.index("job:complete") < names.index("worker:stop")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_listener_that_raises_is_logged_and_jobs_keep_running(
    database_url: str,
    pool: asyncpg.Pool[Any],
    conn: asyncpg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    events = Events()
    completed: list[int] = []
    second_done = asyncio.Event()

    def sync_broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    async def async_broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    def on_complete(event: Event) -> None:
        completed.append(event["job"].id)
        if len(completed) == 2:
            second_done.set()

    for name in ("job:start", "job:success", "job:complete"):
        events.on(name, sync_broken if kind == "sync" else async_broken)
    events.on("job:complete", on_complete)

    first = await add_job(pool, "ok")
    worker = Worker(database_url, tasks=outcome_registry(), options=fast_options(concurrency=1), events=events)
    with caplog.at_level(logging.ERROR, logger="backfill.events"):
        async with running(worker) as run:
            await wait_for(lambda: _deleted(conn, first.id), timeout=5, message="the first job completes")
            second = await add_job(pool, "ok")
            await wait_for_event(second_done, timeout=5, message="a second job after the broken listeners")
            await wait_for(lambda: _deleted(conn, second.id), timeout=5, message="the second job completes")
            assert not run.done()
            worker.stop()
            summary = await asyncio.wait_for(run, 10)

    assert completed == [first.id, second.id]
    assert summary.succeeded == 2
    assert await job_count(conn) == 0
    errors = [r for r in caplog.records if r.name == "backfill.events" and "listener bug" in str(r.exc_info)]
    assert len(errors) == 6  # three events per job, two jobs


async def test_an_unsubscribed_listener_hears_nothing_more(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    events = Events()
    heard: list[int] = []
    unsubscribe = events.on("job:success", lambda event: heard.append(event["job"].id))
    first = await add_job(pool, "ok")
    await Worker(database_url, tasks=outcome_registry(), options=fast_options(), events=events).run_once()

    unsubscribe()
    await add_job(pool, "ok")
    summary = await Worker(database_url, tasks=outcome_registry(), options=fast_options(), events=events).run_once()

    assert summary.succeeded == 1
    assert heard == [first.id]


async def test_jobs_complete_on_the_observed_path_many_at_once(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # A job:* listener moves every job off the fast path: results, batches and counts must still be right.
    for number in range(30):
        await add_job(pool, "ok" if number % 3 else "retry", {"n": number})
    events = Events()
    successes: list[int] = []
    events.on("job:success", lambda event: successes.append(event["job"].id))

    summary = await Worker(
        database_url, tasks=outcome_registry(), options=fast_options(concurrency=4), events=events
    ).run_once()

    assert (summary.succeeded, summary.failed) == (20, 10)
    assert len(set(successes)) == 20
    remaining = await conn.fetch("select task_identifier, attempts, locked_by from graphile_worker.jobs")
    assert len(remaining) == 10
    assert {(row["task_identifier"], row["attempts"], row["locked_by"]) for row in remaining} == {("retry", 1, None)}


async def _deleted(conn: asyncpg.Connection[Any], job_id: int) -> bool:
    return await job_row(conn, job_id) is None


@pytest.mark.parametrize("observed", [False, True], ids=["fast-path", "observed-path"])
async def test_a_success_discarded_as_a_lost_lease_is_not_counted_as_succeeded(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], observed: bool
) -> None:
    started = asyncio.Event()
    lock_taken = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("long")
    async def long(payload: dict[str, Any]) -> None:
        if payload.get("wait"):
            started.set()
            await lock_taken.wait()

    events = Events()
    lost: list[Event] = []
    events.on("job:lostLease", lost.append)
    if observed:
        events.on("job:success", lambda event: None)
    stolen = await add_job(pool, "long", {"wait": True}, queue_name="fenced")
    kept = await add_job(pool, "long", {"wait": False})
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=2), events=events)
    run = asyncio.create_task(worker.run_once())
    await wait_for_event(started, timeout=5, message="handler start")
    await wait_for(lambda: _deleted(conn, kept.id), timeout=5, message="the other job completes")

    # As if the job had been rescued and claimed by someone else while our handler ran.
    await conn.execute(
        "update graphile_worker._private_jobs set locked_by = 'someone-else', locked_at = now() where id = $1",
        stolen.id,
    )
    lock_taken.set()
    summary = await asyncio.wait_for(run, 10)

    assert (summary.succeeded, summary.lost_leases, summary.failed) == (1, 1, 0)
    assert summary.processed == 1
    assert [(event["action"], event["job_ids"]) for event in lost] == [("complete", [stolen.id])]
    row = await job_row(conn, stolen.id)
    assert row is not None
    assert row["locked_by"] == "someone-else"
