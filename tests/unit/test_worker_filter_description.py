"""A worker's start-up line says which slice of the jobs table it fetches (a lane), so logs tell lanes apart."""

from __future__ import annotations

from backfill.core.run.options import WorkerOptions
from backfill.core.run.worker import _describe_filter


def test_a_worker_taking_every_job_says_nothing_more() -> None:
    assert _describe_filter(WorkerOptions()) == ""


def test_each_filter_is_described() -> None:
    fast = WorkerOptions(max_priority=-1, forbidden_flags=["backfill:lane"])
    assert _describe_filter(fast) == " (only jobs with priority <= -1; no flag backfill:lane)"
    custom = WorkerOptions(required_flags=["backfill:lane=reports"], min_priority=0, max_priority=5)
    assert _describe_filter(custom) == " (only jobs with 0 <= priority <= 5; flags any of backfill:lane=reports)"
