"""A log line for each job that succeeds, so a success leaves a trace beside the metrics.

The lines are written from the worker's ``attempts:batch`` events (which keep the worker's fast path), with
the job set as the current one around each, so the runner's log format adds ``job_id``, ``task``,
``attempt`` and ``lane`` to it like to every line of the attempt; the duration comes as
``duration_seconds``. At thousands of jobs a second one line per job is a lot for a log aggregator:
``BACKFILL_SUCCESS_LOG=debug`` (or ``off``) and ``BACKFILL_SUCCESS_LOG_SAMPLE_RATE`` tune it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from backfill.core import Event, Events
from backfill.core.extension import current_job
from backfill.settings import SuccessLogLevel

logger = logging.getLogger("backfill.jobs")


def log_successes(events: Events, *, level: SuccessLogLevel, sample_rate: float) -> Callable[[], None]:
    """Log the successful attempts ``events`` reports at ``level``, a ``sample_rate`` share of them (0 to 1);
    returns the function that stops it."""
    if level == "off" or sample_rate <= 0.0:
        return lambda: None
    numeric_level = logging.INFO if level == "info" else logging.DEBUG
    draw = random.random
    set_current, reset_current = current_job.set, current_job.reset

    def on_attempts(event: Event) -> None:
        if not logger.isEnabledFor(numeric_level):
            return  # checked once a batch: a runner whose logging leaves this level out pays nothing per job
        for job, duration in event["succeeded"]:
            if sample_rate < 1.0 and draw() >= sample_rate:
                continue
            token = set_current(job)
            try:
                logger.log(
                    numeric_level,
                    "job %s (%s) succeeded on attempt %s in %.3f s",
                    job.id,
                    job.task_identifier,
                    job.attempts,
                    duration,
                    extra={"duration_seconds": round(duration, 6)},
                )
            finally:
                reset_current(token)

    return events.on("attempts:batch", on_attempts)
