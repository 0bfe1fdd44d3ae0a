"""What a worker keeps of a job that asked to keep its outcome: the retention that applies, the value as JSON."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from backfill.core import Job, JobSpec, JobSpecError, TaskDefinitionError, TaskRegistry
from backfill.core.jobs import MAX_RESULT_RETENTION_SECONDS, result_flag
from backfill.core.run.kept_results import MAX_RESULT_BYTES, result_json, retention_for


def _job(flags: frozenset[str] = frozenset()) -> Job:
    now = datetime.now(UTC)
    return Job(1, "t", {}, None, 0, now, 1, 25, None, now, now, None, None, None, 0, flags)


def test_the_jobs_flag_wins_over_the_tasks_retention() -> None:
    registry = TaskRegistry()
    registry.register("t", lambda payload: None, keep_result=timedelta(minutes=1))
    definition = registry["t"]

    assert retention_for(_job(), definition) == 60.0
    assert retention_for(_job(frozenset({result_flag(7200)})), definition) == 7200.0
    assert retention_for(_job(), None) is None


@pytest.mark.parametrize(
    "text", ["backfill:result=abc", "backfill:result=0", "backfill:result=-5", "backfill:result=1e40"]
)
def test_an_unreadable_flag_falls_back_to_the_task(text: str) -> None:
    registry = TaskRegistry()
    registry.register("t", lambda payload: None, keep_result=30)

    assert retention_for(_job(frozenset({text})), registry["t"]) == 30.0
    assert retention_for(_job(frozenset({text})), None) is None


def test_a_year_of_seconds_survives_the_flag_exactly() -> None:
    seconds = MAX_RESULT_RETENTION_SECONDS - 1
    spec = JobSpec("t", {}, keep_result=seconds)

    assert spec.flags == (f"backfill:result={seconds:.0f}",)
    assert retention_for(_job(frozenset(spec.flags)), None) == seconds


@pytest.mark.parametrize("value", [0, -1, float("nan"), MAX_RESULT_RETENTION_SECONDS + 1, "1h", True])
def test_a_bad_retention_is_refused_at_enqueue_and_registration(value: Any) -> None:
    with pytest.raises(JobSpecError, match="keep_result: must be a number of seconds"):
        JobSpec("t", {}, keep_result=value)
    with pytest.raises(TaskDefinitionError, match="task 't': keep_result: must be"):
        TaskRegistry().register("t", lambda payload: None, keep_result=value)


class Receipt(BaseModel):
    number: int


@dataclasses.dataclass
class Total:
    amount: float


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ({"a": [1, "é"]}, {"a": [1, "é"]}),
        (None, None),
        (3, 3),
        ("done", "done"),
        (Receipt(number=7), {"number": 7}),
        (Total(amount=1.5), {"amount": 1.5}),
        ("lone \udc80 surrogate", "lone \udc80 surrogate"),
    ],
)
def test_return_values_are_kept_as_json(value: Any, kept: Any) -> None:
    text, note = result_json(value)

    assert note is None
    assert text is not None
    assert json.loads(text) == kept


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (object(), "TypeError: Object of type object is not JSON serializable"),
        (float("nan"), "ValueError: Out of range float values are not JSON compliant"),
        ({1j: "complex key"}, "TypeError: keys must be"),
    ],
)
def test_a_value_that_is_not_json_is_noted_by_its_type_only(value: Any, why: str) -> None:
    text, note = result_json(value)

    assert text is None
    assert note is not None and note.startswith("the return value was not kept: it is not JSON-serialisable")
    assert why in note


def test_a_model_that_fails_to_dump_is_named_without_its_message() -> None:
    class Leaky:
        def model_dump(self, **_: Any) -> Any:
            raise ValueError("secret-value-1234")

    text, note = result_json(Leaky())

    assert text is None
    assert note is not None and "ValueError" in note and "secret" not in note


def test_a_value_over_the_limit_is_not_kept() -> None:
    text, note = result_json("x" * MAX_RESULT_BYTES)

    assert text is None
    assert note is not None and f"more than {MAX_RESULT_BYTES}" in note
