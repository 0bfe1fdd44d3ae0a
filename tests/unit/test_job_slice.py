"""A slice of the jobs table is one value, whether a lane or WorkerOptions' four arguments describe it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.run.job_slice import JobSlice
from backfill.core.run.options import WorkerOptions


def test_worker_options_hold_their_priority_bounds_and_flags_as_one_slice() -> None:
    options = WorkerOptions(min_priority=0, max_priority=5, required_flags=["r"], forbidden_flags=["a", "b"])
    assert options.job_slice == JobSlice(0, 5, forbidden_flags=("a", "b"), required_flags=("r",))
    assert (options.forbidden_flags, options.required_flags) == (("a", "b"), ("r",))
    assert WorkerOptions().job_slice == JobSlice()


def test_replacing_a_bound_replaces_the_slice() -> None:
    options = dataclasses.replace(WorkerOptions(max_priority=-1), max_priority=3)
    assert options.job_slice == JobSlice(max_priority=3)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"forbidden_flags": "paused"}, "forbidden_flags must be a list of strings"),
        ({"required_flags": ["a", 3]}, "required_flags must be a list of strings"),
        ({"min_priority": True}, "min_priority must be an integer or None, got True"),
        ({"max_priority": "1"}, "max_priority must be an integer or None, got '1'"),
        ({"min_priority": 2, "max_priority": 1}, "min_priority (2) must not be above max_priority (1)"),
    ],
)
def test_a_bad_slice_is_refused_with_the_same_words_either_way(arguments: dict[str, Any], message: str) -> None:
    for build in (JobSlice, WorkerOptions):
        with pytest.raises(ConfigurationError) as raised:
            build(**arguments)
        assert str(raised.value) == message


def test_a_slice_is_a_hashable_value() -> None:
    assert hash(JobSlice(forbidden_flags=["x"])) == hash(JobSlice(forbidden_flags=("x",)))


def test_flags_given_as_a_generator_are_kept() -> None:
    # Validating the items used the generator up, and the slice silently lost its flags: a lane meant to skip
    # jobs with a flag then took them all.
    assert JobSlice(forbidden_flags=(f for f in ["a", "b"])).forbidden_flags == ("a", "b")  # type: ignore[arg-type]
    assert WorkerOptions(required_flags=iter(["backfill:lane=x"])).required_flags == ("backfill:lane=x",)  # type: ignore[arg-type]


def test_flags_that_are_not_a_collection_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="required_flags must be a list of strings"):
        JobSlice(required_flags=5)  # type: ignore[arg-type]
