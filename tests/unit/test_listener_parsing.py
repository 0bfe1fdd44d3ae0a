"""How the listener reads notifications, and how retries through an outage wait and log."""

from __future__ import annotations

import itertools
import logging

import pytest

from backfill.core.retry import ConsecutiveFailures, backoff_delays
from backfill.core.run.listener import parse_insert_count


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


def test_consecutive_failures_warn_once_per_outage_and_start_over(caplog: pytest.LogCaptureFixture) -> None:
    failures = ConsecutiveFailures(initial=0.1, maximum=1.0)
    logger = logging.getLogger("test.retry")
    with caplog.at_level(logging.DEBUG, logger="test.retry"):
        delays = [failures.failed(logger, "fetching", OSError("down")) for _ in range(3)]
    assert [record.levelno for record in caplog.records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "fetching failed (1 in a row): down" in caplog.records[0].getMessage()
    assert all(0.05 <= delay <= 1.0 for delay in delays)
    assert failures.succeeded() is True  # ends the outage
    assert failures.succeeded() is False
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="test.retry"):
        failures.failed(logger, "fetching", OSError("down again"))
    assert [record.levelno for record in caplog.records] == [logging.WARNING]  # a new outage warns again
