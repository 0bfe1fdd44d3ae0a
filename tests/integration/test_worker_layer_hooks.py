"""The core hooks the backfill layer is built on: the retry planner, results:written, upkeep off."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import ConfigurationError
from backfill.core.events import Event, Events
from backfill.core.hooks import Hooks, RetryDecision
from backfill.core.jobs import Job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: Any) -> None:
        return None

    @registry.task("boom")
    async def boom(payload: Any) -> None:
        raise RuntimeError("boom")

    return registry


async def _gap_and_attempts(conn: asyncpg.Connection[Any], job_id: int) -> tuple[float, int, int]:
    row = await conn.fetchrow(
        """
        select extract(epoch from j.run_at - e.failed_at)::float8 as gap, j.attempts, j.max_attempts
          from graphile_worker._private_jobs j
          join graphile_worker.backfill_job_errors e on e.job_id = j.id
         where j.id = $1
        """,
        job_id,
    )
    assert row is not None
    return row["gap"], row["attempts"], row["max_attempts"]


async def test_the_retry_planner_sets_the_delay_or_fails_permanently(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    delayed = await add_job(pool, "boom", {"plan": "delay"})
    permanent = await add_job(pool, "boom", {"plan": "permanent"})
    seen: list[tuple[int, str]] = []

    def planner(job: Job, error: BaseException | None) -> RetryDecision:
        seen.append((job.id, str(error)))
        if job.payload["plan"] == "delay":
            return RetryDecision(delay=123.0)
        return RetryDecision(permanent=True)

    await Worker(database_url, tasks=_registry(), options=fast_options(), hooks=Hooks(retry_planner=planner)).run_once()

    assert sorted(seen) == sorted([(delayed.id, "boom"), (permanent.id, "boom")])
    gap, attempts, _ = await _gap_and_attempts(conn, delayed.id)
    assert gap == pytest.approx(123.0, abs=1e-3)
    assert attempts == 1
    _, attempts, max_attempts = await _gap_and_attempts(conn, permanent.id)
    assert attempts == max_attempts == 25


@pytest.mark.parametrize("answer", ["raises", "nonsense"])
async def test_a_broken_planner_falls_back_to_graphile_backoff(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], answer: str
) -> None:
    job = await add_job(pool, "boom", {})

    def planner(job: Job, error: BaseException | None) -> Any:
        if answer == "raises":
            raise KeyError("planner bug")
        return 42

    await Worker(database_url, tasks=_registry(), options=fast_options(), hooks=Hooks(retry_planner=planner)).run_once()
    gap, attempts, _ = await _gap_and_attempts(conn, job.id)
    assert gap == pytest.approx(2.718, abs=0.05)  # exp(1): Graphile's first backoff
    assert attempts == 1


def test_retry_decision_refuses_a_bad_delay() -> None:
    with pytest.raises(ValueError, match="non-negative number of seconds"):
        RetryDecision(delay=-1)


async def test_results_written_reports_committed_results_with_final_failures(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    ok = await add_job(pool, "ok", {})
    retried = await add_job(pool, "boom", {}, max_attempts=2)
    final = await add_job(pool, "boom", {}, max_attempts=1)
    events = Events()
    written: list[Event] = []
    events.on("results:written", written.append)

    await Worker(database_url, tasks=_registry(), options=fast_options(), events=events).run_once()

    completed = {job.id for event in written for job in event["completed"]}
    failed = {job.id for event in written for job in event["failed"]}
    finals = {job.id for event in written for job in event["final"]}
    assert (completed, failed, finals) == ({ok.id}, {retried.id, final.id}, {final.id})


def test_a_crontab_needs_upkeep() -> None:
    with pytest.raises(ConfigurationError, match="upkeep"):
        Worker("postgresql://unused", tasks=_registry(), options=fast_options(upkeep=False), crontab="* * * * * ok")
