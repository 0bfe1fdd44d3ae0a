"""The count of scheduled jobs that the queue gauges keep between rounds, and when to take it again.

Counting the jobs due later means reading every one of them: a few milliseconds for a few thousand, 1-2 s
for a million (PostgreSQL 15, the development machine). Taken every 15-second round, a million scheduled
jobs would keep PostgreSQL busy 5-10% of the time for a figure that changes slowly. So the count runs again only
once :data:`SCHEDULED_COUNT_SHARE` of the time since it last started has been spent on it: every round while it
is cheap (what tests and most deployments see), every couple of minutes for a million jobs. In between, the
round reuses the last count, minus the jobs that it counted as scheduled and that are now ready (the ready
statement counts those, so a job is never shown both ways). Jobs scheduled, deleted or moved to an earlier
run_at since the count show at the next count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# At most this share of the time goes to counting scheduled jobs: 1% keeps an idle runner over a million of them
# about as cheap for PostgreSQL as an idle worker, and the figure at most a couple of minutes old.
SCHEDULED_COUNT_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class ScheduledJobs:
    """One count of the waiting jobs due later: per lane, per named queue, and the database time it was taken
    (``None`` before the first count)."""

    lanes: Mapping[str, int] = field(default_factory=dict)
    queues: Mapping[str, int] = field(default_factory=dict)
    counted_at: datetime | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> ScheduledJobs:
        """From queue_stats.sql's ``scheduled`` rows."""
        lanes: dict[str, int] = {}
        queues: dict[str, int] = {}
        counted_at = None
        for row in rows:
            counted_at = row["counted_at"]
            if row["by_lane"] is None:  # the lone row when nothing is scheduled
                continue
            if row["by_lane"]:
                lanes[row["lane"]] = int(row["scheduled"])
            else:
                queues[row["queue_name"]] = int(row["scheduled"])
        return cls(lanes, queues, counted_at)


class CountSpacing:
    """When a costly count may run again, so that it takes at most ``share`` of the time: a count that ran for
    ``d`` seconds is next due ``d / share`` seconds after it started."""

    def __init__(self, share: float = SCHEDULED_COUNT_SHARE, *, name: str = "share") -> None:
        """``name``: what the caller calls ``share``, for the error that refuses one outside (0, 1]."""
        if not 0 < share <= 1:
            raise ValueError(f"{name} must be above 0 and at most 1, got {share!r}")
        self._share = share
        self._next_due = float("-inf")

    def due(self, now: float) -> bool:
        """Whether the count should run at ``now`` (monotonic seconds)."""
        return now >= self._next_due

    def ran(self, started: float, finished: float) -> None:
        """Record a count that ran from ``started`` to ``finished`` (monotonic seconds)."""
        self._next_due = started + (finished - started) / self._share
