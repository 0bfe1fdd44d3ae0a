"""backfill.testing.job_context: a handler called as a worker would call it, with no database anywhere."""

from __future__ import annotations

import inspect
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backfill.core import JobContext, JobKeyMode, JobSpec, JobSpecError, TaskRegistry
from backfill.testing import NoDatabaseError, RecordingJobContext, job_context


async def test_a_handler_runs_with_the_context_and_what_it_enqueues_is_recorded() -> None:
    registry = TaskRegistry()

    @registry.task("send_invoice")
    async def send_invoice(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.logger.info("sending invoice %s", payload["invoice"])
        await ctx.add_job("email_customer", {"invoice": payload["invoice"]}, priority=-5, queue_name="mail")
        if ctx.is_last_attempt:
            await ctx.add_job("alert_finance", {"invoice": payload["invoice"]})

    ctx = job_context({"invoice": 17}, task="send_invoice", attempt=3, max_attempts=3)
    await send_invoice(ctx.job.payload, ctx)

    assert isinstance(ctx, JobContext)
    assert [(added.identifier, added.payload) for added in ctx.added_jobs] == [
        ("email_customer", {"invoice": 17}),
        ("alert_finance", {"invoice": 17}),
    ]
    first = ctx.added_jobs[0]
    assert (first.spec.priority, first.spec.queue_name, first.job_key_mode) == (-5, "mail", None)
    assert first.job is not None and (first.job.id, first.job.priority, first.job.attempts) == (1, -5, 0)
    assert ctx.added_jobs[1].job is not None and ctx.added_jobs[1].job.id == 2


def test_the_job_is_the_one_a_worker_would_hand_over() -> None:
    run_at = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    ctx = job_context(
        {"when": (1, 2)},
        task="report",
        attempt=2,
        max_attempts=5,
        job_id=41,
        queue_name="reports",
        priority=3,
        key="daily",
        flags=["beta"],
        run_at=run_at,
    )
    job = ctx.job
    assert (job.id, job.task_identifier, job.queue_name, job.priority, job.key) == (41, "report", "reports", 3, "daily")
    assert (job.attempts, job.max_attempts, job.run_at, job.flags) == (2, 5, run_at, frozenset({"beta"}))
    assert job.payload == {"when": [1, 2]}  # as decoded from the database's JSON: the tuple is a list
    assert (ctx.attempt, ctx.is_last_attempt) == (2, False)
    assert not ctx.abort_signal.is_set()
    assert ctx.schema.name == "graphile_worker"


def test_the_defaults_are_graphiles_and_no_payload_is_an_empty_object() -> None:
    ctx = job_context()
    assert (ctx.job.payload, ctx.job.attempts, ctx.job.max_attempts, ctx.job.priority) == ({}, 1, 25, 0)
    assert ctx.is_last_attempt is False


def test_an_attempt_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt must be between 1 and max_attempts"):
        job_context(attempt=4, max_attempts=3)
    with pytest.raises(ValueError, match="attempt must be between 1 and max_attempts"):
        job_context(attempt=0)


def test_the_logger_carries_the_jobs_fields(caplog: pytest.LogCaptureFixture) -> None:
    ctx = job_context(task="t", job_id=9, attempt=2, max_attempts=2)
    with caplog.at_level(logging.INFO, logger="backfill.task"):
        ctx.logger.info("hello")
    record = caplog.records[-1]
    assert (record.job_id, record.task, record.attempt, record.worker_id) == (9, "t", 2, "backfill-testing")  # type: ignore[attr-defined]


async def test_add_jobs_records_each_and_job_key_modes_are_checked() -> None:
    ctx = job_context()
    jobs = await ctx.add_jobs([JobSpec("a", {"n": 1}), JobSpec("b", job_key="k")], job_key_preserve_run_at=True)
    assert [job.task_identifier for job in jobs] == ["a", "b"]
    assert [added.job_key_mode for added in ctx.added_jobs] == [JobKeyMode.PRESERVE_RUN_AT] * 2

    await ctx.add_job("c", job_key="k", job_key_mode="unsafe_dedupe")
    assert ctx.added_jobs[-1].job_key_mode is JobKeyMode.UNSAFE_DEDUPE
    with pytest.raises(JobSpecError, match="job_key_mode"):
        await ctx.add_job("c", job_key="k", job_key_mode="sometimes")
    with pytest.raises(JobSpecError, match="max_attempts"):
        await ctx.add_job("c", max_attempts=0)  # checked as the real add_job checks it
    assert len(ctx.added_jobs) == 3


async def test_a_transform_applies_as_the_workers_before_schedule_hooks_do() -> None:
    def transform(spec: JobSpec) -> JobSpec | None:
        if spec.identifier == "dropped":
            return None
        return JobSpec(spec.identifier, spec.payload, max_attempts=3)

    ctx = job_context(transform=transform)
    assert await ctx.add_job("dropped") is None
    kept = await ctx.add_job("kept", {"x": 1}, run_at=datetime.now(UTC) + timedelta(hours=1))
    assert kept is not None and kept.max_attempts == 3
    assert [added.identifier for added in ctx.added_jobs] == ["kept"]
    assert await ctx.add_jobs([JobSpec("dropped"), JobSpec("also_kept")]) != []
    assert [added.identifier for added in ctx.added_jobs] == ["kept", "also_kept"]


async def test_the_database_is_refused_with_a_clear_error() -> None:
    ctx = job_context()
    with pytest.raises(NoDatabaseError, match=r"without a database, so ctx\.pool\.acquire is not available"):
        async with ctx.connection():
            pass
    with pytest.raises(NoDatabaseError, match=r"ctx\.pool\.fetchval"):
        await ctx.pool.fetchval("select 1")


@pytest.mark.parametrize("method", ["add_job", "add_jobs"])
def test_the_recording_methods_take_what_the_real_ones_take(method: str) -> None:
    # A parameter added to JobContext's method must be added to the recording one too, or handlers using it
    # would fail only in tests.
    real = inspect.signature(getattr(JobContext, method))
    recording = inspect.signature(getattr(RecordingJobContext, method))
    assert list(recording.parameters.values()) == list(real.parameters.values())
