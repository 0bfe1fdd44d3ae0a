"""Interceptors: before_run verdicts, after_run replacements (a broken one is ignored), before_schedule chains."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from backfill.core.hooks import Fail, Hooks, JobResult, Skip
from backfill.core.jobs import Job, JobSpec

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def make_job(job_id: int = 1) -> Job:
    return Job(job_id, "task", {}, None, 0, NOW, 1, 25, None, NOW, NOW, None, NOW, "w", 0)


def test_intercepts_runs_only_with_run_interceptors() -> None:
    assert not Hooks().intercepts_runs
    assert not Hooks(before_schedule=[lambda spec: spec]).intercepts_runs
    assert Hooks(before_run=[lambda job: None]).intercepts_runs
    assert Hooks(after_run=[lambda job, result: None]).intercepts_runs


async def test_before_run_returns_the_first_verdict_and_stops_there() -> None:
    called: list[str] = []

    def first(job: Job) -> None:
        called.append("first")

    async def second(job: Job) -> Fail:
        called.append("second")
        return Fail("refused", permanent=True)

    def third(job: Job) -> Skip:
        called.append("third")
        return Skip("never asked")

    verdict = await Hooks(before_run=[first, second, third]).check_before_run(make_job())

    assert verdict == Fail("refused", permanent=True)
    assert called == ["first", "second"]


async def test_before_run_with_no_verdict_is_none() -> None:
    assert await Hooks(before_run=[lambda job: None]).check_before_run(make_job()) is None
    assert await Hooks().check_before_run(make_job()) is None


async def test_before_run_that_raises_propagates() -> None:
    def broken(job: Job) -> None:
        raise RuntimeError("guard is broken")

    with pytest.raises(RuntimeError, match="guard is broken"):
        await Hooks(before_run=[broken]).check_before_run(make_job())


async def test_before_run_returning_something_else_is_a_type_error() -> None:
    def wrong(job: Job) -> Any:
        return "skip"

    with pytest.raises(TypeError, match="not Skip/Fail/None"):
        await Hooks(before_run=[wrong]).check_before_run(make_job())


async def test_after_run_chains_replacements_and_none_keeps_the_result() -> None:
    error = RuntimeError("expected")
    seen: list[JobResult] = []

    def forgive(job: Job, result: JobResult) -> JobResult:
        seen.append(result)
        return JobResult(value="forgiven")

    async def keep(job: Job, result: JobResult) -> None:
        seen.append(result)

    final = await Hooks(after_run=[forgive, keep]).apply_after_run(make_job(), JobResult(error=error))

    assert final == JobResult(value="forgiven")
    assert final.succeeded
    assert seen == [JobResult(error=error), JobResult(value="forgiven")]


async def test_after_run_that_raises_or_returns_junk_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    def broken(job: Job, result: JobResult) -> JobResult:
        raise RuntimeError("observer bug")

    def junk(job: Job, result: JobResult) -> Any:
        return "not a result"

    original = JobResult(value=42)
    with caplog.at_level(logging.ERROR, logger="backfill.hooks"):
        final = await Hooks(after_run=[broken, junk]).apply_after_run(make_job(7), original)

    assert final is original
    messages = [r.getMessage() for r in caplog.records if r.name == "backfill.hooks"]
    assert any("raised on job 7" in m for m in messages)
    assert any("not a JobResult" in m for m in messages)


def test_before_schedule_chains_and_none_drops() -> None:
    calls: list[str] = []

    def bump(spec: JobSpec) -> JobSpec:
        calls.append("bump")
        return JobSpec(spec.identifier, spec.payload, queue_name="moved", priority=5)

    def drop_moved(spec: JobSpec) -> JobSpec | None:
        calls.append("drop")
        return None if spec.payload == {"drop": True} else spec

    def after_drop(spec: JobSpec) -> JobSpec:
        calls.append("after")
        return spec

    hooks = Hooks(before_schedule=[bump, drop_moved, after_drop])
    kept = hooks.transform(JobSpec("t", {"drop": False}))
    assert kept is not None
    assert (kept.queue_name, kept.priority) == ("moved", 5)
    assert calls == ["bump", "drop", "after"]

    calls.clear()
    assert hooks.transform(JobSpec("t", {"drop": True})) is None
    assert calls == ["bump", "drop"]  # nothing after the interceptor that dropped it


def test_before_schedule_returning_something_else_is_a_type_error() -> None:
    def wrong(spec: JobSpec) -> Any:
        return {"identifier": "t"}

    with pytest.raises(TypeError, match="not a JobSpec"):
        Hooks(before_schedule=[wrong]).transform(JobSpec("t"))


def test_no_before_schedule_interceptor_keeps_the_spec() -> None:
    spec = JobSpec("t", {"a": 1})
    assert Hooks().transform(spec) is spec
