"""The success line: at the configured level, sampled, or off."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from backfill.core.events import Events
from backfill.runner.success_log import log_successes
from backfill.settings import SuccessLogLevel


def _succeed(events: Events, count: int) -> None:
    for job_id in range(count):
        job = SimpleNamespace(id=job_id, task_identifier="send_email", attempts=2)
        events.emit("job:success", worker_id="w", job=job, duration=0.25)


@pytest.mark.parametrize(("level", "numeric"), [("info", logging.INFO), ("debug", logging.DEBUG)])
def test_each_success_is_logged_with_its_id_task_attempt_and_duration(
    level: SuccessLogLevel, numeric: int, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    log_successes(events, level=level, sample_rate=1.0)
    with caplog.at_level(logging.DEBUG, logger="backfill.jobs"):
        _succeed(events, 3)
    assert [record.levelno for record in caplog.records] == [numeric] * 3
    assert caplog.records[1].getMessage() == "job 1 (send_email) succeeded on attempt 2 in 0.250 s"
    assert caplog.records[1].__dict__["duration_seconds"] == 0.25


def test_off_and_a_zero_sample_rate_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    off, unsampled = Events(), Events()
    log_successes(off, level="off", sample_rate=1.0)
    log_successes(unsampled, level="info", sample_rate=0.0)
    with caplog.at_level(logging.DEBUG, logger="backfill.jobs"):
        _succeed(off, 10)
        _succeed(unsampled, 10)
    assert caplog.records == []
    assert not off.listens("job:success")  # nothing listens, so jobs keep the worker's fast path


def test_a_sample_rate_logs_about_that_share(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    log_successes(events, level="info", sample_rate=0.1)
    with caplog.at_level(logging.INFO, logger="backfill.jobs"):
        _succeed(events, 2000)
    # Binomial(2000, 0.1): mean 200, standard deviation about 13; 120..280 is over six deviations either way.
    assert 120 <= len(caplog.records) <= 280
