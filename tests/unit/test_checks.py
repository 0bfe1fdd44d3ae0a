"""The shared value checks: what they accept, and the two wordings of what they refuse."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from backfill.core.checks import (
    BIGINT_MAX,
    check_aware,
    check_int,
    check_name,
    check_number,
    is_aware,
    is_int,
    is_number,
)
from backfill.core.errors import ConfigurationError, JobSpecError


def test_predicates_refuse_bools() -> None:
    assert is_int(3) and not is_int(True) and not is_int(3.0)
    assert is_number(3) and is_number(0.5) and is_number(math.nan) and not is_number(False) and not is_number("3")
    assert is_aware(datetime.now(UTC)) and not is_aware(datetime(2030, 1, 1)) and not is_aware("2030-01-01")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "max_attempts: must be an integer, not str"),
        (True, "max_attempts: must be an integer, not bool"),
        (0, "max_attempts: must be between 1 and 32767, got 0"),
        (32768, "max_attempts: must be between 1 and 32767, got 32768"),
    ],
)
def test_int_without_must_names_the_type_then_the_bounds(value: Any, message: str) -> None:
    with pytest.raises(JobSpecError) as raised:
        check_int("max_attempts", value, 1, 32767, error=JobSpecError)
    assert (str(raised.value), raised.value.field) == (message, "max_attempts")


@pytest.mark.parametrize("value", [0, 10_001, True, 5.0, "5", None])
def test_int_with_must_says_it_in_one_sentence_with_the_value(value: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        check_int("limit", value, 1, 10_000, must="an integer between 1 and 10000")
    assert str(raised.value) == f"limit must be an integer between 1 and 10000, got {value!r}"


def test_int_accepts_the_bounds_and_none_only_when_optional() -> None:
    for value in (1, 10_000):
        check_int("limit", value, 1, 10_000)
    check_int("job_id", BIGINT_MAX, 1, BIGINT_MAX)
    check_int("priority", 40_000)  # no bound given: any integer
    check_int("limit", None, 1, 10, optional=True)
    with pytest.raises(ConfigurationError, match=r"^limit must be an integer, not NoneType$"):
        check_int("limit", None, 1, 10)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [(0.5, True), (3, True), (0, False), (-1.0, False), (math.nan, False), (math.inf, False), (True, False)],
)
def test_number_bounds_refuse_nan_and_infinity(value: Any, accepted: bool) -> None:
    def check() -> None:
        check_number("poll_interval", value, above=0, must="a positive number of seconds")

    if accepted:
        check()
    else:
        with pytest.raises(ConfigurationError, match=r"^poll_interval must be a positive number of seconds, got "):
            check()


def test_number_bounds_are_inclusive_or_exclusive_as_named() -> None:
    check_number("jitter", 0, at_least=0, below=1, must="a fraction")
    with pytest.raises(ConfigurationError):
        check_number("jitter", 1, at_least=0, below=1, must="a fraction")
    check_number("timeout", 604800, above=0, at_most=604800, must="seconds")
    with pytest.raises(ConfigurationError):
        check_number("timeout", 0, above=0, at_most=604800, must="seconds")


def test_number_may_allow_infinity_but_never_nan() -> None:
    check_number("interval", math.inf, above=0, finite=False, must="a positive number of seconds")
    with pytest.raises(ConfigurationError):
        check_number("interval", math.nan, above=0, finite=False, must="a positive number of seconds")


def test_any_error_class_and_a_field_that_brings_its_own_colon() -> None:
    with pytest.raises(ValueError, match=r"^RetryAfter delay must be a non-negative number of seconds, got -1$"):
        check_number("RetryAfter delay", -1, at_least=0, must="a non-negative number of seconds", error=ValueError)
    with pytest.raises(ConfigurationError, match=r"^call_timeout: must be a positive number of seconds, got 0$"):
        check_number("call_timeout:", 0, above=0, must="a positive number of seconds")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "queue_name: must be a non-empty string"),
        ("", "queue_name: must be a non-empty string"),
        (7, "queue_name: must be a non-empty string"),
        ("q" * 129, "queue_name: must be at most 128 characters"),
    ],
)
def test_name_without_must(value: Any, message: str) -> None:
    check_name("queue_name", "q" * 128, 128, error=JobSpecError)
    with pytest.raises(JobSpecError) as raised:
        check_name("queue_name", value, 128, error=JobSpecError)
    assert str(raised.value) == message


def test_name_with_must_and_optional() -> None:
    check_name("lane", None, 64, must="a name of 1 to 64 characters", optional=True)
    with pytest.raises(ConfigurationError, match=r"^lane must be a name of 1 to 64 characters, got 'x{65}'$"):
        check_name("lane", "x" * 65, 64, must="a name of 1 to 64 characters", optional=True)


def test_aware_datetime_both_wordings() -> None:
    naive = datetime(2030, 1, 1)
    check_aware("run_at", datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(JobSpecError, match=r"^run_at: must be a datetime, not str$"):
        check_aware("run_at", "2030-01-01", error=JobSpecError)
    with pytest.raises(JobSpecError, match=r"^run_at: must be timezone-aware \(e\.g\. datetime\.now"):
        check_aware("run_at", naive, error=JobSpecError)
    with pytest.raises(ConfigurationError, match=r"^filter since must be a timezone-aware datetime, got datetime"):
        check_aware("filter since", naive, must="a timezone-aware datetime", optional=True)
