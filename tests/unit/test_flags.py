"""The ``backfill:`` flag namespace: who owns each name, and the one parser every reader of a job's flags uses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import backfill.core
from backfill.core.errors import ConfigurationError
from backfill.core.flags import (
    SUSPECT,
    TIMEOUT,
    is_set,
    parse_flags,
    per_flag_set,
    register_flag,
    registered_flags,
    value_of,
    values_of,
    without_values,
)
from backfill.core.jobs import SUSPECT_FLAG, TIMEOUT_FLAG_PREFIX, Job
from backfill.dlq.models import DLQ, DLQ_FLAG_PREFIX, entry_id_of
from backfill.integrations.opentelemetry.flag import TRACE
from backfill.lanes.lane import LANE, LANE_FLAG, LANE_FLAG_PREFIX
from backfill.tasks.retry_policies import RETRY, RETRY_FLAG_PREFIX

CORE_DIR = Path(backfill.core.__file__).parent


def test_each_name_has_its_owner_the_layers_registered_from_the_layer() -> None:
    owners = {name: flag.owner for name, flag in registered_flags().items()}
    assert owners == {
        "timeout": "backfill.core.flags",
        "suspect": "backfill.core.flags",
        "result": "backfill.core.flags",
        "lane": "backfill.lanes.lane",
        "retry": "backfill.tasks.retry_policies",
        "dlq": "backfill.dlq.models",
        "trace": "backfill.integrations.opentelemetry.flag",  # OpenTelemetry's: imported without opentelemetry
    }
    assert TRACE.prefix == "backfill:trace="


def test_the_names_sql_splices_are_the_registered_flags() -> None:
    # Statement files take these constants by name; they must be the registry's strings, unchanged.
    assert SUSPECT_FLAG == SUSPECT.bare == "backfill:suspect"
    assert TIMEOUT_FLAG_PREFIX == TIMEOUT.prefix == "backfill:timeout="
    assert (LANE_FLAG, LANE_FLAG_PREFIX) == (LANE.bare, LANE.prefix) == ("backfill:lane", "backfill:lane=")
    assert RETRY_FLAG_PREFIX == RETRY.prefix == "backfill:retry="
    assert DLQ_FLAG_PREFIX == DLQ.prefix == "backfill:dlq="


def test_the_core_does_not_name_the_layers_flags() -> None:
    layer_flags = [flag for flag in registered_flags().values() if not flag.owner.startswith("backfill.core.")]
    assert layer_flags, "the layer's modules are imported above, so their flags are registered"
    for path in CORE_DIR.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert [flag.bare for flag in layer_flags if flag.bare in text] == [], path


def test_a_name_another_module_holds_is_refused() -> None:
    with pytest.raises(ConfigurationError) as raised:
        register_flag("lane", owner="myapp.lanes")
    assert str(raised.value) == (
        "flag backfill:lane is registered by backfill.lanes.lane; myapp.lanes cannot register it too"
    )
    assert registered_flags()["lane"] is LANE


def test_the_owner_registering_again_gets_the_same_flag() -> None:
    # What importlib.reload of the owning module does.
    assert register_flag("timeout", owner="backfill.core.flags") is TIMEOUT


@pytest.mark.parametrize("name", ["", "Lane", "lane=x", "a:b", "1st", "lane x", 3])
def test_a_name_that_would_not_read_back_is_refused(name: object) -> None:
    with pytest.raises(ConfigurationError, match="flag name must be"):
        register_flag(name, owner="myapp")  # type: ignore[arg-type]


def test_value_of_reads_the_valued_flag_not_the_bare_one() -> None:
    assert value_of(frozenset({"backfill:lane", "backfill:lane=reports", "x"}), LANE) == "reports"
    assert value_of(frozenset({"backfill:lane"}), LANE) is None
    assert value_of(frozenset({"backfill:lanes=x"}), LANE) is None  # another name sharing a beginning
    assert value_of(frozenset({"backfill:timeout="}), TIMEOUT) == ""
    assert value_of(frozenset(), TIMEOUT) is None
    assert value_of(None, TIMEOUT) is None
    assert value_of(["backfill:retry=fast"], RETRY) == "fast"  # a spec's list, not only a job's set


def test_values_of_gives_every_value_for_readers_that_skip_bad_ones() -> None:
    assert sorted(values_of(frozenset({"backfill:dlq=abc", "backfill:dlq=7", "other"}), DLQ)) == ["7", "abc"]
    assert list(values_of(None, DLQ)) == []


def test_is_set_is_the_bare_flag_only() -> None:
    assert is_set(frozenset({"backfill:suspect"}), SUSPECT)
    assert not is_set(frozenset({"backfill:suspect=1"}), SUSPECT)
    assert not is_set(frozenset(), SUSPECT)
    assert not is_set(None, SUSPECT)


def test_without_values_keeps_the_bare_flag_and_the_order() -> None:
    flags = ["b", "backfill:retry=fast", "backfill:retry", "a", "backfill:retry=custom:1:2:2:0"]
    assert without_values(flags, RETRY) == ("b", "backfill:retry", "a")
    assert without_values(None, RETRY) == ()


def test_with_value_formats_a_valued_flag() -> None:
    assert TIMEOUT.with_value("1.5") == "backfill:timeout=1.5"
    assert DLQ.with_value("12") == "backfill:dlq=12"


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ('{"a": true, "b": false}', {"a"}),
        ({"a": True, "backfill:suspect": True}, {"a", "backfill:suspect"}),
        ("{}", set()),
        ({}, set()),
        ("null", set()),
    ],
)
def test_parse_flags_reads_the_column_as_text_or_decoded(stored: object, expected: set[str]) -> None:
    assert parse_flags(stored) == frozenset(expected)


def _job(*flags: str) -> Job:
    now = datetime.now(UTC)
    return Job(1, "t", {}, None, 0, now, 1, 25, None, now, now, None, None, None, 0, frozenset(flags))


def test_a_jobs_timeout_comes_from_its_flag_and_an_unreadable_one_means_none() -> None:
    assert _job("backfill:timeout=1.5", "other").timeout == 1.5
    assert _job("backfill:timeout=abc").timeout is None
    assert _job("backfill:timeout=0").timeout is None
    assert _job("backfill:timeout").timeout is None
    assert _job().timeout is None


def test_a_requeued_jobs_entry_skips_flags_that_are_not_an_id() -> None:
    assert entry_id_of(frozenset({"backfill:dlq=not-a-number", "backfill:dlq=42"})) == 42
    assert entry_id_of(frozenset({"backfill:dlq=" + "9" * 19})) is None  # longer than a bigint id can be
    assert entry_id_of(frozenset({"backfill:dlq"})) is None


def test_flag_text_is_decoded_once_per_distinct_text() -> None:
    text = '{"backfill:retry=fast": true, "backfill:lane": false}'
    first = parse_flags(text)
    assert first == frozenset({"backfill:retry=fast"})
    assert parse_flags(str(text)) is first  # the worker's hot path: a lookup, not a parse
    assert parse_flags(text.replace("fast", "slow")) == frozenset({"backfill:retry=slow"})


def test_a_reader_per_flag_set_is_worked_out_once_and_bounded() -> None:
    calls: list[frozenset[str]] = []

    @per_flag_set
    def count_flags(flags: frozenset[str]) -> int:
        calls.append(flags)
        return len(flags)

    flags = frozenset({"a", "b"})
    assert [count_flags(flags), count_flags(frozenset({"a", "b"})), count_flags(frozenset())] == [2, 2, 0]
    assert calls == [flags, frozenset()]
    many = [frozenset({f"x{i}"}) for i in range(3000)]  # more distinct sets than the cache keeps
    assert all(count_flags(f) == 1 for f in many)
    unhashable: Any = ["a", "b", "c"]  # a Job built by hand with a list of flags is read each time
    assert count_flags(unhashable) == 3
