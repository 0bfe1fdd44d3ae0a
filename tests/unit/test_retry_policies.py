"""Retry policies: preset numbers, the backoff curve, jitter bounds, flags and error classification."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from backfill.core.errors import ConfigurationError, PayloadValidationError, PermanentFailure, RetryAfter
from backfill.core.hooks import RetryDecision
from backfill.core.jobs import Job
from backfill.tasks.retry_policies import (
    PRESETS,
    ErrorRules,
    RetryPlanner,
    RetryPolicy,
    policy_from_flags,
    resolve_policy,
)


def _job(*, attempts: int = 1, flags: frozenset[str] = frozenset(), task: str = "t") -> Job:
    now = datetime.now(UTC)
    return Job(1, task, None, None, 0, now, attempts, 25, None, now, now, None, now, "w", 0, flags)


@pytest.mark.parametrize(
    ("name", "numbers"),
    [
        ("fast", (3, 0.1, 30.0, 2.0, 0.10)),
        ("aggressive", (12, 0.5, 600.0, 1.5, 0.15)),
        ("conservative", (5, 5.0, 1800.0, 2.5, 0.20)),
        ("default", (8, 1.0, 300.0, 2.0, 0.10)),
    ],
)
def test_presets_have_the_documented_numbers(name: str, numbers: tuple[float, ...]) -> None:
    policy = PRESETS[name]
    assert (policy.max_attempts, policy.initial_delay, policy.max_delay, policy.multiplier, policy.jitter) == numbers


def test_graphile_preset_defers_to_graphile_backoff_with_25_attempts() -> None:
    assert PRESETS["graphile"].graphile
    assert PRESETS["graphile"].max_attempts == 25


def test_base_delay_grows_by_the_multiplier_and_is_capped() -> None:
    policy = PRESETS["conservative"]
    assert [policy.base_delay(n) for n in (1, 2, 3)] == [5.0, 12.5, 31.25]
    assert policy.base_delay(20) == 1800.0


def test_jitter_stays_within_its_fraction_and_really_varies() -> None:
    policy = PRESETS["aggressive"]
    rng = random.Random(7)
    delays = [policy.delay(3, rng=rng) for _ in range(2000)]
    base = policy.base_delay(3)
    assert all(base * 0.85 <= d <= base * 1.15 for d in delays)
    # Spread over the whole band, not a constant: both ends of the band are reached within 2%.
    assert min(delays) < base * 0.853 and max(delays) > base * 1.147


def test_preset_flags_round_trip() -> None:
    for name, policy in PRESETS.items():
        assert policy.flag == f"backfill:retry={name}"
        assert policy_from_flags(frozenset({policy.flag, "other"})) is policy


def test_custom_policy_travels_with_its_numbers() -> None:
    policy = RetryPolicy(4, initial_delay=0.25, max_delay=9, multiplier=3, jitter=0.05)
    restored = policy_from_flags(frozenset({policy.flag}))
    assert restored is not None
    assert (restored.initial_delay, restored.max_delay, restored.multiplier, restored.jitter) == (0.25, 9, 3, 0.05)


@pytest.mark.parametrize(
    "flag", ["backfill:retry=nonsense", "backfill:retry=custom:1:2", "backfill:retry=custom:a:b:c:d"]
)
def test_unreadable_flags_mean_no_policy(flag: str) -> None:
    assert policy_from_flags(frozenset({flag})) is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 3, "initial_delay": -1}, "initial_delay"),
        ({"max_attempts": 3, "initial_delay": 10, "max_delay": 5}, "max_delay"),
        ({"max_attempts": 3, "multiplier": 0.5}, "multiplier"),
        ({"max_attempts": 3, "jitter": 1.0}, "jitter"),
        ({"max_attempts": 3, "jitter": math.nan}, "jitter"),
    ],
)
def test_bad_policies_name_the_field(arguments: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RetryPolicy(**arguments)  # type: ignore[arg-type]


def test_resolve_policy_names_the_presets_when_unknown() -> None:
    assert resolve_policy("fast") is PRESETS["fast"]
    with pytest.raises(ConfigurationError, match="unknown retry policy 'quick'; presets are fast, aggressive"):
        resolve_policy("quick")


class RateLimitedError(Exception):
    pass


class BadInputError(ValueError):
    pass


def test_error_rules_classify_by_type() -> None:
    rules = ErrorRules(permanent=(ValueError,), retry_after={RateLimitedError: 42.0})
    assert rules.decide(BadInputError("x")) == RetryDecision(permanent=True)  # subclasses match
    assert rules.decide(RateLimitedError()) == RetryDecision(delay=42.0)
    assert rules.decide(RetryAfter(3)) == RetryDecision(delay=3.0)
    assert rules.decide(PermanentFailure("no")) == RetryDecision(permanent=True)
    assert rules.decide(PayloadValidationError("t", ["a"], "bad")) == RetryDecision(permanent=True)
    assert rules.decide(RuntimeError("boom")) is None
    assert rules.decide(None) is None


def test_error_rules_refuse_non_exceptions() -> None:
    with pytest.raises(ConfigurationError, match="exception classes"):
        ErrorRules(permanent=(int,))  # type: ignore[arg-type]


def test_planner_prefers_the_job_flag_then_the_task_policy_then_graphile() -> None:
    planner = RetryPlanner(task_policies={"t": PRESETS["fast"]}, rng=random.Random(1))
    flagged = planner(_job(attempts=2, flags=frozenset({PRESETS["default"].flag})), RuntimeError())
    assert flagged is not None and flagged.delay is not None and 1.8 <= flagged.delay <= 2.2
    by_task = planner(_job(attempts=1), RuntimeError())
    assert by_task is not None and by_task.delay is not None and 0.09 <= by_task.delay <= 0.11
    # No flag, no task policy: Graphile's backoff (the core's), as a Node enqueuer expects.
    assert planner(_job(task="other"), RuntimeError()) is None
    assert planner(_job(flags=frozenset({PRESETS["graphile"].flag})), RuntimeError()) is None


def test_planner_applies_error_rules_before_the_policy() -> None:
    planner = RetryPlanner(rules=ErrorRules(permanent=(KeyError,)))
    assert planner(_job(flags=frozenset({PRESETS["default"].flag})), KeyError("k")) == RetryDecision(permanent=True)
