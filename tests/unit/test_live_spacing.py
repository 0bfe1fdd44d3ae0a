"""The overview's pure parts (backfill/admin/live.py): when :class:`Spaced` takes its costly count again, and how
the throughput rows become 60 zero-filled minutes (``_series``) and 1/5/15/60-minute windows (``_windows``).

The clock is a fake put in place of the module's ``time``: a count "takes" as long as the test says, and time
passes only when the test moves it.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backfill.admin import live
from backfill.admin.live import Spaced, _empty_series, _series, _windows


class FakeClock:
    """Stands in for the ``time`` module inside backfill.admin.live: monotonic and wall seconds moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall_offset = 1_700_000_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall_offset + self.now


class FakeCount:
    """A costly count: returns 1, 2, 3… and moves the clock on by ``duration`` while it runs."""

    def __init__(self, clock: FakeClock, duration: float) -> None:
        self.clock = clock
        self.duration = duration
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        self.clock.now += self.duration
        return self.calls


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(live, "time", fake)
    return fake


async def test_the_first_get_counts_and_records_when(clock: FakeClock) -> None:
    count = FakeCount(clock, duration=0.5)
    spaced: Spaced[int] = Spaced(count, 0.01)
    assert spaced.value is None and spaced.counted_at is None
    assert await spaced.get() == 1
    assert count.calls == 1
    assert spaced.value == 1
    assert spaced.counted_at == clock.time()  # taken when the count ended


async def test_an_immediate_second_get_reuses_the_count(clock: FakeClock) -> None:
    count = FakeCount(clock, duration=0.5)
    spaced: Spaced[int] = Spaced(count, 0.01)
    await spaced.get()
    counted_at = spaced.counted_at
    assert await spaced.get() == 1
    assert count.calls == 1
    assert spaced.counted_at == counted_at


async def test_it_counts_again_once_duration_over_share_has_passed_since_the_start(clock: FakeClock) -> None:
    count = FakeCount(clock, duration=0.5)
    spaced: Spaced[int] = Spaced(count, 0.01)
    started = clock.now
    await spaced.get()  # ran 0.5 s: next due 0.5 / 0.01 = 50 s after it started
    clock.now = started + 49.9
    assert await spaced.get() == 1
    assert count.calls == 1
    clock.now = started + 50.0
    assert await spaced.get() == 2
    assert count.calls == 2
    assert spaced.counted_at == clock.time()


async def test_a_cheap_count_with_share_one_runs_every_time(clock: FakeClock) -> None:
    count = FakeCount(clock, duration=0.0)
    spaced: Spaced[int] = Spaced(count, 1.0)
    assert [await spaced.get() for _ in range(3)] == [1, 2, 3]


async def test_a_longer_count_is_spaced_further(clock: FakeClock) -> None:
    count = FakeCount(clock, duration=0.5)
    spaced: Spaced[int] = Spaced(count, 0.1)
    started = clock.now
    await spaced.get()  # due again at started + 5 s
    count.duration = 2.0
    clock.now = started + 5.0
    await spaced.get()  # ran 2 s from started + 5: due again at started + 25 s
    assert count.calls == 2
    clock.now = started + 24.9
    await spaced.get()
    assert count.calls == 2
    clock.now = started + 25.0
    assert await spaced.get() == 3


async def test_a_failed_count_leaves_the_spacing_so_the_next_get_tries_again(clock: FakeClock) -> None:
    calls = 0

    async def failing_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database gone")
        return 7

    spaced: Spaced[int] = Spaced(failing_once, 0.01)
    with pytest.raises(RuntimeError):
        await spaced.get()
    assert spaced.value is None and spaced.counted_at is None
    assert await spaced.get() == 7


def test_a_share_outside_0_to_1_is_refused() -> None:
    async def count() -> int:
        return 0

    with pytest.raises(ValueError, match="share"):
        Spaced(count, 0.0)


# -- _series and _windows ------------------------------------------------------------------------------------

NOW = datetime(2026, 3, 4, 10, 30, 42, 123456, tzinfo=UTC)
THIS_MINUTE = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)


def _row(lane: str, minutes_ago: int, succeeded: int, failed: int) -> dict[str, Any]:
    return {
        "lane": lane,
        "minute": THIS_MINUTE - timedelta(minutes=minutes_ago),
        "succeeded": succeeded,
        "failed": failed,
    }


def test_an_empty_series_is_60_zero_minutes_ending_with_the_current_one() -> None:
    minutes = _empty_series(NOW)
    assert len(minutes) == 60
    assert minutes[-1]["minute"] == THIS_MINUTE
    assert minutes[0]["minute"] == THIS_MINUTE - timedelta(minutes=59)
    assert all(b["minute"] - a["minute"] == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert all(m["succeeded"] == 0 and m["failed"] == 0 for m in minutes)


def test_series_place_each_row_in_its_minute_per_lane_and_drop_rows_outside_the_hour() -> None:
    rows = [
        _row("bulk", 0, 4, 1),
        _row("bulk", 3, 10, 0),
        _row("bulk", 59, 2, 2),
        _row("bulk", 60, 100, 100),  # an hour ago: outside
        _row("fast", 1, 7, 0),
        {"lane": "fast", "minute": THIS_MINUTE + timedelta(minutes=1), "succeeded": 50, "failed": 0},  # future
    ]
    series = _series(rows, NOW)
    assert set(series) == {"bulk", "fast"}
    bulk, fast = series["bulk"], series["fast"]
    assert len(bulk) == len(fast) == 60
    assert (bulk[59]["succeeded"], bulk[59]["failed"]) == (4, 1)
    assert (bulk[56]["succeeded"], bulk[56]["failed"]) == (10, 0)
    assert (bulk[0]["succeeded"], bulk[0]["failed"]) == (2, 2)
    assert sum(m["succeeded"] for m in bulk) == 16
    assert sum(m["failed"] for m in bulk) == 3
    assert fast[58]["succeeded"] == 7
    assert sum(m["succeeded"] for m in fast) == 7


def test_series_without_rows_are_empty() -> None:
    assert _series([], NOW) == {}


def test_windows_add_up_the_last_minutes_with_the_share_failed() -> None:
    minutes = _series(
        [_row("bulk", 0, 6, 2), _row("bulk", 3, 10, 0), _row("bulk", 10, 0, 4), _row("bulk", 40, 20, 0)], NOW
    )["bulk"]
    windows = _windows(minutes)
    assert list(windows) == ["1m", "5m", "15m", "60m"]
    assert windows["1m"] == {"succeeded": 6, "failed": 2, "failure_rate": 0.25}
    assert windows["5m"] == {"succeeded": 16, "failed": 2, "failure_rate": pytest.approx(2 / 18)}
    assert windows["15m"] == {"succeeded": 16, "failed": 6, "failure_rate": pytest.approx(6 / 22)}
    assert windows["60m"] == {"succeeded": 36, "failed": 6, "failure_rate": pytest.approx(6 / 42)}


def test_windows_over_nothing_have_a_zero_failure_rate() -> None:
    windows = _windows(_empty_series(NOW))
    assert all(w == {"succeeded": 0, "failed": 0, "failure_rate": 0.0} for w in windows.values())
