"""Retry policies end to end: a real worker fails real jobs, and the run_at it writes follows the policy.

After each failed attempt the fail statement sets ``run_at = now() + delay`` and records the error in
``backfill_job_errors`` with ``failed_at = now()`` in the same statement, so ``run_at - failed_at`` of the
job's latest error is exactly the delay the worker chose. Between attempts the test moves ``run_at`` back to
now (time passing, without waiting for it), and for late attempts it sets ``attempts`` ahead, so every
preset's curve, cap and jitter are checked in a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.errors import RetryAfter
from backfill.core.hooks import Hooks
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from backfill.tasks.retry_policies import PRESETS, ErrorRules, RetryPlanner, RetryPolicy
from tests.integration.worker_support.helpers import fast_options

JOBS = "graphile_worker._private_jobs"
ERRORS = "graphile_worker.backfill_job_errors"


class RateLimitedError(Exception):
    pass


def _failing_registry(error: Callable[[], BaseException]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("retry.fails")
    async def fails(payload: Any) -> None:
        raise error()

    return registry


async def _run_once(database_url: str, registry: TaskRegistry, rules: ErrorRules | None = None) -> None:
    hooks = Hooks(retry_planner=RetryPlanner(rules=rules))
    await Worker(database_url, tasks=registry, options=fast_options(), hooks=hooks).run_once()


async def _gaps(conn: asyncpg.Connection[Any]) -> dict[int, float]:
    rows = await conn.fetch(
        f"""
        select j.id, extract(epoch from j.run_at - e.failed_at)::float8 as gap
          from {JOBS} as j
          join lateral (
            select failed_at from {ERRORS} where job_id = j.id order by id desc limit 1
          ) as e on true
        """
    )
    return {row["id"]: row["gap"] for row in rows}


async def _make_runnable(conn: asyncpg.Connection[Any], *, attempts: int | None = None) -> None:
    if attempts is None:
        await conn.execute(f"update {JOBS} set run_at = now()")
    else:
        await conn.execute(f"update {JOBS} set run_at = now(), attempts = $1", attempts)


@pytest.mark.parametrize("preset", ["fast", "aggressive", "conservative", "default"])
async def test_each_preset_sets_run_at_gaps_within_its_jitter(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], preset: str
) -> None:
    policy = PRESETS[preset]
    client = BackfillClient(pool)
    for n in range(20):
        await client.enqueue("retry.fails", {"n": n}, retry_policy=preset)
    registry = _failing_registry(lambda: RuntimeError("still broken"))
    # Attempts 1 and 2 for real, then the attempt whose delay reaches the cap.
    capped_attempt = next(n for n in range(1, 40) if policy.base_delay(n) >= policy.max_delay)
    checked = [1, 2]
    if capped_attempt < policy.max_attempts:
        checked.append(capped_attempt)
    for attempt in checked:
        if attempt > 2:
            await _make_runnable(conn, attempts=attempt - 1)
        elif attempt == 2:
            await _make_runnable(conn)
        await _run_once(database_url, registry)
        expected = policy.base_delay(attempt)
        gaps = list((await _gaps(conn)).values())
        assert len(gaps) == 20
        low, high = expected * (1 - policy.jitter), expected * (1 + policy.jitter)
        assert all(low - 1e-3 <= gap <= high + 1e-3 for gap in gaps), (attempt, expected, sorted(gaps))
        # Jitter is real: twenty jobs failing together do not all come back at the same moment.
        assert max(gaps) - min(gaps) > expected * policy.jitter * 0.2
    if capped_attempt < policy.max_attempts:
        assert expected == policy.max_delay


async def test_the_preset_max_attempts_ends_in_permanent_failure(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await BackfillClient(pool).enqueue("retry.fails", {}, retry_policy="fast")
    registry = _failing_registry(lambda: RuntimeError("nope"))
    for _ in range(PRESETS["fast"].max_attempts):
        await _make_runnable(conn)
        await _run_once(database_url, registry)
    row = await conn.fetchrow(f"select attempts, max_attempts, last_error from {JOBS}")
    assert row is not None
    assert (row["attempts"], row["max_attempts"], row["last_error"]) == (3, 3, "RuntimeError: nope")
    errors = await conn.fetch("select attempt, error from graphile_worker.backfill_job_errors order by id")
    assert [(e["attempt"], e["error"]) for e in errors] == [
        (1, "RuntimeError: nope"),
        (2, "RuntimeError: nope"),
        (3, "RuntimeError: nope"),
    ]


async def test_a_custom_policy_survives_in_the_job(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    policy = RetryPolicy(6, initial_delay=7, max_delay=100, multiplier=3, jitter=0)
    await BackfillClient(pool).enqueue("retry.fails", {}, retry_policy=policy)
    registry = _failing_registry(lambda: RuntimeError("x"))
    await _run_once(database_url, registry)  # a fresh worker: nothing but the job says what the policy is
    await _make_runnable(conn)
    await _run_once(database_url, registry)
    (gap,) = (await _gaps(conn)).values()
    assert gap == pytest.approx(21.0, abs=1e-3)


async def test_graphile_preset_and_unflagged_jobs_keep_graphile_backoff(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await BackfillClient(pool).enqueue("retry.fails", {}, retry_policy="graphile")
    await conn.execute("select graphile_worker.add_job('retry.fails', '{}')")  # as Node would enqueue it
    await _run_once(database_url, _failing_registry(lambda: RuntimeError("x")))
    gaps = list((await _gaps(conn)).values())
    assert gaps == [pytest.approx(math.e, abs=0.05)] * 2


async def test_retry_after_and_error_rules_decide_before_the_policy(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool)
    await client.enqueue("retry.after", {}, retry_policy="default")
    await client.enqueue("retry.limited", {}, retry_policy="default")
    await client.enqueue("retry.bad", {}, retry_policy="default")
    registry = TaskRegistry()

    @registry.task("retry.after")
    async def after(payload: Any) -> None:
        raise RetryAfter(90, "upstream said wait")

    @registry.task("retry.limited")
    async def limited(payload: Any) -> None:
        raise RateLimitedError("429")

    @registry.task("retry.bad")
    async def bad(payload: Any) -> None:
        raise ValueError("cannot ever work")

    rules = ErrorRules(permanent=(ValueError,), retry_after={RateLimitedError: 45.0})
    await _run_once(database_url, registry, rules)
    rows = {
        row["identifier"]: row
        for row in await conn.fetch(
            f"select t.identifier, j.attempts, j.max_attempts, j.last_error,"
            f" extract(epoch from j.run_at - e.failed_at)::float8 as gap"
            f" from {JOBS} j join graphile_worker._private_tasks t on t.id = j.task_id"
            f" join {ERRORS} e on e.job_id = j.id"
        )
    }
    assert rows["retry.after"]["gap"] == pytest.approx(90.0, abs=1e-3)
    assert rows["retry.after"]["last_error"] == "upstream said wait"
    assert rows["retry.limited"]["gap"] == pytest.approx(45.0, abs=1e-3)
    assert rows["retry.bad"]["attempts"] == rows["retry.bad"]["max_attempts"] == 8  # permanent at attempt 1
    history = await conn.fetchrow(
        "select attempt, permanent from graphile_worker.backfill_job_errors where error = $1",
        "ValueError: cannot ever work",
    )
    assert history is not None
    # The attempt that ran (1), not the max_attempts the permanent failure wrote into the row.
    assert (history["attempt"], history["permanent"]) == (1, True)
