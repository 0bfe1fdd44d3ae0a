"""Priority levels, priority bands and lane routing: the values the rest of the layer is built on."""

from __future__ import annotations

import pytest

from backfill.core import JobSlice
from backfill.core.errors import ConfigurationError, JobSpecError
from backfill.lanes.lane import BULK_LANE, FAST_LANE, LANE_FLAG, Lane, lane_flags, lane_of, parse_lanes
from backfill.priorities import PRIORITY_BANDS, Priority, priority_band


def test_priority_levels_have_the_documented_values_and_order() -> None:
    assert {level.name: int(level) for level in Priority} == {
        "EMERGENCY": -20,
        "FAST_HIGH": -10,
        "FAST_DEFAULT": -5,
        "BULK_DEFAULT": 0,
        "BULK_LOW": 5,
        "BULK_LOWEST": 10,
    }
    assert sorted(Priority)[0] is Priority.EMERGENCY  # lower runs first


@pytest.mark.parametrize(
    ("priority", "band"),
    [
        (-100, "emergency"),
        (-20, "emergency"),
        (-11, "emergency"),
        (-10, "fast_high"),
        (-7, "fast_high"),
        (-5, "fast_default"),
        (-1, "fast_default"),
        (0, "bulk_default"),
        (4, "bulk_default"),
        (5, "bulk_low"),
        (10, "bulk_lowest"),
        (32767, "bulk_lowest"),
    ],
)
def test_priority_band_is_the_most_urgent_level_reached(priority: int, band: str) -> None:
    assert priority_band(priority) == band
    assert band in PRIORITY_BANDS


def test_bands_never_cross_the_lane_boundary() -> None:
    for priority in range(-40, 40):
        fast_band = priority_band(priority).startswith(("emergency", "fast"))
        assert fast_band == (lane_of(priority, None) == FAST_LANE)


def test_lane_of_uses_priority_unless_a_custom_lane_flag_is_set() -> None:
    assert lane_of(-1, None) == FAST_LANE
    assert lane_of(0, frozenset()) == BULK_LANE
    assert lane_of(-20, frozenset(lane_flags("reports"))) == "reports"
    # The named flag alone (without the bare one the built-in lanes refuse) does not route.
    assert lane_of(3, frozenset({"backfill:lane=reports"})) == BULK_LANE


def test_lane_flags_are_the_bare_and_the_named_flag() -> None:
    assert lane_flags("reports") == (LANE_FLAG, "backfill:lane=reports")


@pytest.mark.parametrize("name", ["", "Reports", "1st", "a b", "x" * 41, "fast", "bulk"])
def test_bad_custom_lane_names_are_refused_with_the_field(name: str) -> None:
    with pytest.raises(JobSpecError, match=r"^lane: "):
        lane_flags(name)


def test_lane_slices_split_the_table_without_overlap() -> None:
    assert Lane(FAST_LANE, 10).job_slice == JobSlice(max_priority=-1, forbidden_flags=(LANE_FLAG,))
    assert Lane(BULK_LANE, 5).job_slice == JobSlice(min_priority=0, forbidden_flags=(LANE_FLAG,))
    assert Lane("reports", 2).job_slice == JobSlice(required_flags=("backfill:lane=reports",))


def test_parse_lanes_reads_name_equals_concurrency() -> None:
    assert parse_lanes(" reports=3, exports=1 ,") == (Lane("reports", 3), Lane("exports", 1))
    assert parse_lanes("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reports", "name=concurrency"),
        ("reports=x", "name=concurrency"),
        ("reports=0", "positive integer"),
        ("fast=3", "built-in lane"),
        ("a=1,a=2", "defined twice"),
        ("Bad=1", "lane name"),
    ],
)
def test_parse_lanes_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_lanes(text)
