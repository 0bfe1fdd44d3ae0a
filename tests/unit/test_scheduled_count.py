"""When the queue gauges count the scheduled jobs again, and what a count's rows become."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backfill.metrics.scheduled_count import CountSpacing, ScheduledJobs


def test_a_count_is_due_at_first_then_after_its_duration_over_the_share() -> None:
    spacing = CountSpacing(0.01)
    assert spacing.due(0.0)
    spacing.ran(started=10.0, finished=10.5)  # half a second: 1% of 50 s
    assert not spacing.due(10.5)
    assert not spacing.due(59.9)
    assert spacing.due(60.0)
    spacing.ran(started=60.0, finished=60.001)  # cheap again: due again at once, round after round
    assert spacing.due(60.1)


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_share_outside_0_to_1_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        CountSpacing(share)


def test_rows_become_counts_per_lane_and_per_queue_with_their_time() -> None:
    at = datetime(2026, 12, 3, 10, tzinfo=UTC)
    rows = [
        {"counted_at": at, "by_lane": True, "lane": "bulk", "queue_name": None, "scheduled": 7},
        {"counted_at": at, "by_lane": False, "lane": None, "queue_name": "serial", "scheduled": 2},
    ]
    assert ScheduledJobs.from_rows(rows) == ScheduledJobs({"bulk": 7}, {"serial": 2}, at)
    nothing = [{"counted_at": at, "by_lane": None, "lane": None, "queue_name": None, "scheduled": None}]
    assert ScheduledJobs.from_rows(nothing) == ScheduledJobs({}, {}, at)
