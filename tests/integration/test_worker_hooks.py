"""Interceptors in a running worker: before_run skips and fails, after_run rewrites results, before_schedule
changes and drops the jobs a handler enqueues."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.events import Event, Events
from backfill.core.hooks import Fail, Hooks, JobResult, Skip
from backfill.core.jobs import Job, JobSpec
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import JOBS_TABLE, fast_options, job_count, job_row


class Calls:
    def __init__(self) -> None:
        self.ran: list[Any] = []


def registry_for(calls: Calls) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("work")
    async def work(payload: dict[str, Any]) -> str:
        calls.ran.append(payload)
        if payload.get("fail"):
            raise RuntimeError(f"handler failed on {payload['fail']}")
        return "handler value"

    return registry


async def test_a_skip_verdict_completes_the_job_without_running_the_handler(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    calls = Calls()
    skipped = await add_job(pool, "work", {"kill": True})
    await add_job(pool, "work", {"kill": False})
    events = Events()
    seen: list[Event] = []
    events.on("job:skipped", seen.append)

    def kill_switch(job: Job) -> Skip | None:
        return Skip("kill switch on") if job.payload["kill"] else None

    hooks = Hooks(before_run=[kill_switch])
    summary = await Worker(
        database_url, tasks=registry_for(calls), options=fast_options(), events=events, hooks=hooks
    ).run_once()

    assert calls.ran == [{"kill": False}]
    assert (summary.skipped, summary.succeeded, summary.failed) == (1, 1, 0)
    assert await job_count(conn) == 0
    assert [(event["job"].id, event["reason"]) for event in seen] == [(skipped.id, "kill switch on")]


@pytest.mark.parametrize("permanent", [False, True], ids=["retryable", "permanent"])
async def test_a_fail_verdict_fails_the_attempt_with_its_message(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], permanent: bool
) -> None:
    calls = Calls()
    job = await add_job(pool, "work", {}, max_attempts=7)
    hooks = Hooks(before_run=[lambda job: Fail("refused by policy", permanent=permanent)])

    summary = await Worker(database_url, tasks=registry_for(calls), options=fast_options(), hooks=hooks).run_once()

    assert calls.ran == []
    assert (summary.failed, summary.permanently_failed, summary.succeeded) == (1, int(permanent), 0)
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"] == "refused by policy"
    assert row["attempts"] == (7 if permanent else 1)
    assert row["locked_by"] is None


async def test_a_before_run_interceptor_that_raises_fails_the_attempt_with_its_error(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    calls = Calls()
    job = await add_job(pool, "work", {})

    async def broken_guard(job: Job) -> None:
        raise LookupError("feature flag service unavailable")

    summary = await Worker(
        database_url, tasks=registry_for(calls), options=fast_options(), hooks=Hooks(before_run=[broken_guard])
    ).run_once()

    assert calls.ran == []
    assert (summary.failed, summary.succeeded) == (1, 0)
    row = await job_row(conn, job.id)
    assert row is not None
    assert (row["last_error"], row["attempts"]) == ("LookupError: feature flag service unavailable", 1)


async def test_after_run_turns_an_expected_error_into_success_and_a_bad_value_into_failure(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    calls = Calls()
    forgiven = await add_job(pool, "work", {"fail": "expected"})
    rejected = await add_job(pool, "work", {"reject": True})
    given: dict[int, JobResult] = {}

    def review(job: Job, result: JobResult) -> JobResult | None:
        given[job.id] = result
        if result.error is not None and "expected" in str(result.error):
            return JobResult(value="forgiven")
        if job.payload.get("reject"):
            return JobResult(error=ValueError(f"the handler returned {result.value!r}, which is wrong"))
        return None

    summary = await Worker(
        database_url, tasks=registry_for(calls), options=fast_options(), hooks=Hooks(after_run=[review])
    ).run_once()

    assert len(calls.ran) == 2
    assert (summary.succeeded, summary.failed) == (1, 1)
    assert str(given[forgiven.id].error) == "handler failed on expected"
    assert given[rejected.id] == JobResult(value="handler value")
    assert await job_row(conn, forgiven.id) is None
    row = await job_row(conn, rejected.id)
    assert row is not None
    assert (row["last_error"], row["attempts"]) == (
        "ValueError: the handler returned 'handler value', which is wrong",
        1,
    )


@pytest.mark.parametrize("outcome", ["success", "failure"])
async def test_an_after_run_interceptor_that_raises_leaves_the_result_as_it_was(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], outcome: str
) -> None:
    calls = Calls()
    payload = {"fail": "its own error"} if outcome == "failure" else {}
    job = await add_job(pool, "work", payload)

    async def broken_observer(job: Job, result: JobResult) -> JobResult:
        raise RuntimeError("observer bug")

    summary = await Worker(
        database_url, tasks=registry_for(calls), options=fast_options(), hooks=Hooks(after_run=[broken_observer])
    ).run_once()

    assert calls.ran == [payload]
    row = await job_row(conn, job.id)
    if outcome == "success":
        assert (summary.succeeded, summary.failed) == (1, 0)
        assert row is None
    else:
        assert (summary.succeeded, summary.failed) == (0, 1)
        assert row is not None
        assert row["last_error"] == "RuntimeError: handler failed on its own error"


async def test_before_schedule_changes_and_drops_jobs_enqueued_through_the_context(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    returned: dict[str, Job | None] = {}
    registry = TaskRegistry()

    @registry.task("parent")
    async def parent(payload: dict[str, Any], ctx: JobContext) -> None:
        for name in ("keep", "drop"):
            returned[name] = await ctx.add_job("child", {"name": name}, priority=1)

    def route(spec: JobSpec) -> JobSpec | None:
        if spec.payload["name"] == "drop":
            return None
        return JobSpec(spec.identifier, {**spec.payload, "routed": True}, queue_name="routed", priority=9)

    await add_job(pool, "parent")
    summary = await Worker(
        database_url, tasks=registry, options=fast_options(), hooks=Hooks(before_schedule=[route])
    ).run_once()

    assert summary.succeeded == 1
    assert returned["drop"] is None
    kept = returned["keep"]
    assert kept is not None
    rows = await conn.fetch("select id, queue_name, priority from graphile_worker.jobs")
    assert [(r["id"], r["queue_name"], r["priority"]) for r in rows] == [(kept.id, "routed", 9)]
    assert (kept.queue_name, kept.priority) == ("routed", 9)
    payload = await conn.fetchval(f"select payload from {JOBS_TABLE} where id = $1", kept.id)
    assert json.loads(payload) == {"name": "keep", "routed": True}


async def test_without_before_schedule_the_context_enqueues_as_asked(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    registry = TaskRegistry()

    @registry.task("parent")
    async def parent(payload: dict[str, Any], ctx: JobContext) -> None:
        await ctx.add_job("child", {"name": "plain"}, priority=1)

    await add_job(pool, "parent")
    await Worker(database_url, tasks=registry, options=fast_options(), hooks=Hooks(after_run=[])).run_once()

    rows = await conn.fetch("select queue_name, priority from graphile_worker.jobs")
    assert [(r["queue_name"], r["priority"]) for r in rows] == [(None, 1)]
