"""The success line: at the configured level, sampled, or off."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from backfill.core.events import Events
from backfill.core.run.current import current_job
from backfill.runner.success_log import log_successes
from backfill.settings import SuccessLogLevel


def _succeed(events: Events, count: int) -> None:
    jobs = [SimpleNamespace(id=job_id, task_identifier="send_email", attempts=2) for job_id in range(count)]
    events.emit(
        "attempts:batch", worker_id="w", started=[], succeeded=[(job, 0.25) for job in jobs], failed=[], skipped=[]
    )


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
    assert not off.listens("attempts:batch")  # nothing listens: the worker records no attempts for it


def test_a_sample_rate_logs_about_that_share(caplog: pytest.LogCaptureFixture) -> None:
    events = Events()
    log_successes(events, level="info", sample_rate=0.1)
    with caplog.at_level(logging.INFO, logger="backfill.jobs"):
        _succeed(events, 2000)
    # Binomial(2000, 0.1): mean 200, standard deviation about 13; 120..280 is over six deviations either way.
    assert 120 <= len(caplog.records) <= 280


def test_each_line_is_written_with_its_job_as_the_current_one(caplog: pytest.LogCaptureFixture) -> None:
    # The runner's log format reads the current job to add job_id, task, attempt and lane to the line.
    seen: list[object] = []

    class RecordCurrentJob(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(current_job.get())
            return True

    events = Events()
    log_successes(events, level="info", sample_rate=1.0)
    recorder = RecordCurrentJob()
    logging.getLogger("backfill.jobs").addFilter(recorder)
    try:
        with caplog.at_level(logging.INFO, logger="backfill.jobs"):
            _succeed(events, 2)
    finally:
        logging.getLogger("backfill.jobs").removeFilter(recorder)
    assert [getattr(job, "id", None) for job in seen] == [0, 1]
    assert current_job.get() is None  # and reset after each line
