"""How the listener reads notifications, and the reconnect delays it waits between attempts."""

from __future__ import annotations

import itertools

import pytest

from backfill.core.listener import backoff_delays, parse_insert_count


@pytest.mark.parametrize(
    ("payload", "count"),
    [
        ('{"r":0.42,"count":3}', 3),
        ('{"r" : 0.42, "count" : 1}', 1),  # what json_build_object writes
        ('{"r":0.1,"count":-1}', -1),  # remove_job: the listener ignores counts <= 0
        ('{"r":0.1}', 1),  # no count: one job
        ("not json", 1),  # unparsable: one job, as Node reads it
        ("[1, 2]", 1),
        ('{"count":"x"}', 1),
    ],
)
def test_jobs_insert_count(payload: str, count: int) -> None:
    assert parse_insert_count(payload) == count


def test_backoff_delays_grow_to_a_cap_with_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(initial=0.1, maximum=2.0, factor=2.0), 40))
    assert all(0.05 <= delay <= 2.0 for delay in delays)
    # The ceiling doubles: the first delay is at most 0.1 s, and late delays range up to the cap.
    assert delays[0] <= 0.1
    assert max(delays[10:]) > 1.0
    # Full jitter: not one fixed schedule.
    assert len({round(delay, 6) for delay in delays[10:]}) > 1
