"""ConsecutiveFailures: an outage is logged as one warning at its start and then at most every 30 seconds,
and the backoff starts over once the operation works again."""

from __future__ import annotations

import logging

import pytest

from backfill.core.retry import WARNING_INTERVAL_SECONDS, ConsecutiveFailures, backoff_delays


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_warns_once_then_at_most_every_30_seconds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    monkeypatch.setattr("backfill.core.retry.time.monotonic", clock)
    logger = logging.getLogger("test.retry")
    failures = ConsecutiveFailures()
    with caplog.at_level(logging.DEBUG, logger="test.retry"):
        for _ in range(10):  # ten failures within a second: one warning
            failures.failed(logger, "fetching", OSError("down"))
            clock.now += 0.1
        clock.now += WARNING_INTERVAL_SECONDS
        failures.failed(logger, "fetching", OSError("still down"))
    # This test's logger only: a pool another test left behind may log from its own loop meanwhile.
    records = [r for r in caplog.records if r.name == "test.retry"]
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "fetching failed (1 in a row): down",
        "fetching failed (11 in a row): still down",
    ]
    assert sum(r.levelno == logging.DEBUG for r in records) == 9


def test_success_ends_the_outage_and_the_next_failure_warns_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("backfill.core.retry.time.monotonic", FakeClock())
    logger = logging.getLogger("test.retry")
    failures = ConsecutiveFailures()
    with caplog.at_level(logging.WARNING, logger="test.retry"):
        failures.failed(logger, "writing", OSError("a"))
        assert failures.succeeded() is True
        assert failures.succeeded() is False  # no outage to end
        failures.failed(logger, "writing", OSError("b"))
    assert len(caplog.records) == 2


def test_backoff_delays_grow_to_the_cap_with_jitter_below_the_ceiling() -> None:
    delays = backoff_delays(initial=0.1, maximum=1.0)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    for ceiling in ceilings:
        delay = next(delays)
        assert 0.05 <= delay <= ceiling
