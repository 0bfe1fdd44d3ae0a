"""JobSpec validates every field up front, and each bad value names its field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from backfill.core.errors import BackfillError, JobSpecError
from backfill.core.jobs import JobSpec

AWARE = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_minimal_spec_leaves_defaults_to_the_database() -> None:
    spec = JobSpec("send_email")
    assert spec.identifier == "send_email"
    assert (spec.queue_name, spec.run_at, spec.max_attempts, spec.job_key, spec.priority, spec.flags) == (None,) * 6
    assert spec.payload_json == "{}"


def test_every_field_accepts_a_good_value() -> None:
    plus_two = timezone(timedelta(hours=2))
    spec = JobSpec(
        "t",
        {"a": 1},
        queue_name="q" * 128,
        run_at=AWARE.astimezone(plus_two),
        max_attempts=32767,
        job_key="k" * 512,
        priority=-32768,
        flags=["x", "y"],
    )
    assert spec.payload_json == '{"a":1}'
    assert spec.run_at == AWARE
    assert spec.flags == ("x", "y")
    assert JobSpec("t", max_attempts=1, priority=32767).max_attempts == 1


def test_flags_from_a_generator_are_kept() -> None:
    # The validity check iterates the flags; a one-shot iterable must still reach the database.
    spec = JobSpec("t", flags=(name for name in ["a", "b"]))  # type: ignore[arg-type]
    assert spec.flags == ("a", "b")


BAD_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("identifier", {"identifier": None}),
    ("identifier", {"identifier": ""}),
    ("identifier", {"identifier": "t" * 129}),
    ("identifier", {"identifier": 5}),
    ("payload", {"payload": 5}),
    ("payload", {"payload": "text"}),
    ("payload", {"payload": {"x": float("nan")}}),
    ("payload", {"payload": {"when": datetime.now(UTC)}}),
    ("queue_name", {"queue_name": ""}),
    ("queue_name", {"queue_name": "q" * 129}),
    ("queue_name", {"queue_name": 7}),
    ("run_at", {"run_at": "2030-01-01T00:00:00Z"}),
    ("run_at", {"run_at": datetime(2030, 1, 1)}),  # naive: which zone would the database assume?
    ("run_at", {"run_at": 1_700_000_000}),
    ("max_attempts", {"max_attempts": 0}),
    ("max_attempts", {"max_attempts": -1}),
    ("max_attempts", {"max_attempts": 32768}),
    ("max_attempts", {"max_attempts": True}),
    ("max_attempts", {"max_attempts": 2.0}),
    ("max_attempts", {"max_attempts": "3"}),
    ("job_key", {"job_key": ""}),
    ("job_key", {"job_key": "k" * 513}),
    ("job_key", {"job_key": 42}),
    ("priority", {"priority": -32769}),
    ("priority", {"priority": 32768}),
    ("priority", {"priority": False}),
    ("priority", {"priority": 1.5}),
    ("flags", {"flags": "urgent"}),  # a string is iterable: it would become one flag per character
    ("flags", {"flags": b"urgent"}),
    ("flags", {"flags": ["ok", 3]}),
    ("flags", {"flags": 5}),
    ("flags", {"flags": {"urgent": False}}),
]


@pytest.mark.parametrize(("field", "overrides"), BAD_VALUES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_VALUES)])
def test_bad_value_names_its_field(field: str, overrides: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"identifier": "task", **overrides}
    with pytest.raises(JobSpecError) as caught:
        JobSpec(**arguments)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_every_field_is_covered_by_a_bad_value() -> None:
    fields = {"identifier", "payload", "queue_name", "run_at", "max_attempts", "job_key", "priority", "flags"}
    assert {field for field, _ in BAD_VALUES} == fields


def test_job_spec_error_is_a_backfill_error_and_a_value_error() -> None:
    with pytest.raises(JobSpecError) as caught:
        JobSpec("t", priority=99999)
    assert isinstance(caught.value, BackfillError)
    assert isinstance(caught.value, ValueError)


def test_spec_is_frozen() -> None:
    spec = JobSpec("t")
    with pytest.raises(AttributeError):
        spec.priority = 3  # type: ignore[misc]


def test_with_job_is_the_spec_built_with_those_three_fields() -> None:
    shape: dict[str, Any] = {
        "queue_name": "q",
        "max_attempts": 3,
        "priority": -2,
        "flags": ["a", "b"],
        "timeout": 2.5,
    }
    first = JobSpec("t", {"n": 1}, run_at=AWARE, job_key="k1", **shape)
    second = first.with_job({"n": 2, "é": "ü"}, None, "k2")
    direct = JobSpec("t", {"n": 2, "é": "ü"}, job_key="k2", **shape)
    # Every field, the computed payload_json included: a field added to JobSpec and forgotten by with_job fails.
    for field in dataclasses.fields(JobSpec):
        assert getattr(second, field.name) == getattr(direct, field.name), field.name
    assert first.payload == {"n": 1} and first.job_key == "k1"  # the spec it came from is unchanged


@pytest.mark.parametrize(
    ("field", "arguments"),
    [
        ("run_at", ({}, datetime(2030, 1, 1), None)),
        ("run_at", ({}, "tomorrow", None)),
        ("job_key", ({}, None, "")),
        ("job_key", ({}, None, 5)),
        ("payload", (5, None, None)),
        ("payload", ({"x": {1, 2}}, None, None)),
    ],
)
def test_with_job_checks_the_fields_it_sets(field: str, arguments: tuple[Any, Any, Any]) -> None:
    with pytest.raises(JobSpecError) as caught:
        JobSpec("t").with_job(*arguments)
    assert caught.value.field == field
