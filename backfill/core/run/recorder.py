"""Recording how attempts ended: the summary counts, the log line, the result for the completer, the events.

One place for it, so that the fast path, the observed path and shutdown count and report alike.
"""

from __future__ import annotations

import asyncio
import logging

from backfill.core.error_text import error_message, exception_type, storable_text, traceback_text
from backfill.core.errors import JobTimeoutError, PermanentFailure, RetryAfter
from backfill.core.events import Events
from backfill.core.hooks import RetryDecision, RetryPlanner
from backfill.core.jobs import Job
from backfill.core.run import kept_results
from backfill.core.run.attempt_log import AttemptFailure, AttemptLog
from backfill.core.run.completer import Completer, Failure
from backfill.core.run.execution import Outcome
from backfill.core.run.options import RunSummary
from backfill.core.tasks import TaskRegistry

logger = logging.getLogger("backfill.worker")


class OutcomeRecorder:
    """Turns attempt outcomes into summary counts, log lines, queued results, ``job:*`` events and the
    ``attempts:batch`` record (reported before the result is queued for writing). A job that keeps its outcome
    (:mod:`~backfill.core.run.kept_results`) has it queued with its result."""

    def __init__(
        self,
        completer: Completer,
        summary: RunSummary,
        events: Events,
        attempts: AttemptLog,
        *,
        worker_id: str,
        interrupted_retry_delay: float,
        retry_planner: RetryPlanner | None = None,
        registry: TaskRegistry | None = None,
    ) -> None:
        self._completer = completer
        self._registry = registry if registry is not None else TaskRegistry()
        self.summary = summary
        self._events = events
        self._attempts = attempts
        self._worker_id = worker_id
        self._interrupted_retry_delay = interrupted_retry_delay
        self._retry_planner = retry_planner
        # Jobs an operator asked to cancel while they ran here (job id -> reason): however their attempt ends,
        # it ends as cancelled. Filled by Slots.cancel.
        self.cancels: dict[int, str] = {}

    def outcome(self, job: Job, outcome: Outcome, duration: float) -> None:
        if self.cancels and job.id in self.cancels:
            self.cancelled(job, self.cancels.pop(job.id), started=True)
            return
        if outcome.error is None:
            if outcome.skipped is not None:
                self.summary.skipped += 1
                logger.info("job %s (%s) skipped: %s", job.id, job.task_identifier, outcome.skipped)
                if self._attempts.active:
                    self._attempts.skipped(job, outcome.skipped)
                self._events.emit("job:skipped", worker_id=self._worker_id, job=job, reason=outcome.skipped)
            else:
                self.summary.succeeded += 1
                if self._attempts.active:
                    self._attempts.succeeded.append((job, duration))
                    self._attempts.recorded()
                self._events.emit("job:success", worker_id=self._worker_id, job=job, duration=duration)
            retention = self.retention(job)
            if retention is None:
                self._completer.complete(job)
            elif outcome.skipped is not None:
                self._completer.keep(kept_results.skipped(job, outcome.skipped, retention))
            else:
                self._completer.keep(kept_results.succeeded(job, outcome.value, duration, retention))
            self._events.emit("job:complete", worker_id=self._worker_id, job=job, error=None)
            return
        timed_out = False
        if isinstance(outcome.error, JobTimeoutError):
            timed_out = True
            self.summary.timed_out += 1
            self._events.emit("job:timeout", worker_id=self._worker_id, job=job, timeout=outcome.error.timeout)
        self.failure(
            job,
            error_message(outcome.error),
            error=outcome.error,
            permanent=outcome.permanent,
            replacement_payload=outcome.replacement_payload,
            duration=duration,
            timed_out=timed_out,
        )

    def error(self, job: Job, error: BaseException, duration: float | None = None) -> None:
        """Record how an attempt ended in error; re-raises when the worker itself is cancelling the job."""
        if self.cancels and job.id in self.cancels:
            current = asyncio.current_task()
            stopping = isinstance(error, asyncio.CancelledError) and current is not None and current.cancelling() > 1
            if stopping:  # the worker is cancelling the job too (shutdown): that cancellation goes on
                self.cancels.pop(job.id)
                self.interrupted(job)
                raise error
            self.cancelled(job, self.cancels.pop(job.id), started=True)
            return
        if isinstance(error, asyncio.CancelledError):
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                self.interrupted(job)
                raise error
            self.failure(job, "CancelledError: the handler was cancelled", error=None, duration=duration)
        elif isinstance(error, PermanentFailure):
            self.failure(job, error_message(error), error=error, permanent=True, duration=duration)
        else:
            self.failure(job, error_message(error), error=error, duration=duration)

    def failure(
        self,
        job: Job,
        message: str,
        *,
        error: BaseException | None,
        permanent: bool = False,
        replacement_payload: str | None = None,
        retry_delay: float | None = None,
        duration: float | None = None,
        interrupted: bool = False,
        timed_out: bool = False,
    ) -> None:
        if isinstance(error, RetryAfter):
            retry_delay = error.delay
        planner = self._retry_planner
        if planner is not None and not interrupted:
            decision = _planned(planner, job, error)
            if decision is not None:
                permanent = permanent or decision.permanent
                retry_delay = decision.delay
        final = permanent or job.attempts >= job.max_attempts
        if interrupted:  # cut short by our shutdown, not by the job: counted apart from failures
            self.summary.interrupted += 1
        else:
            self.summary.failed += 1
            if final:
                self.summary.permanently_failed += 1
        logger.warning(
            "job %s (%s) failed on attempt %s of %s%s: %s",
            job.id,
            job.task_identifier,
            job.attempts,
            job.max_attempts,
            " (permanently)" if final else "",
            message,
            # A timeout's traceback would only show the worker's own waiting code.
            exc_info=None if isinstance(error, JobTimeoutError) else error,
        )
        failure = error if error is not None else RuntimeError(message)
        if self._attempts.active:
            self._attempts.failed(AttemptFailure(job, failure, duration, final, timed_out, interrupted))
        self._completer.fail(
            Failure(
                job=job,
                message=storable_text(message),
                replacement_payload=replacement_payload,
                permanent=permanent,
                retry_delay=retry_delay,
                error_type=None if error is None else exception_type(error),
                # A timeout's traceback would only show the worker's own waiting code.
                traceback=None if error is None or isinstance(error, JobTimeoutError) else traceback_text(error),
                retention=self.retention(job),
            )
        )
        events = self._events
        events.emit("job:error", worker_id=self._worker_id, job=job, error=failure, duration=duration)
        if final:
            events.emit("job:failed", worker_id=self._worker_id, job=job, error=failure)
        events.emit("job:complete", worker_id=self._worker_id, job=job, error=failure)

    def cancelled(self, job: Job, reason: str, *, started: bool) -> None:
        """An operator cancelled the job, ``started`` or only claimed: it is completed, neither retried nor failed."""
        current = asyncio.current_task()
        if started and current is not None and current.cancelling() == 1:
            current.uncancel()  # ours (Slots.cancel), delivered or swallowed: the runner goes on to its next job
        self.summary.cancelled += 1
        logger.warning("job %s (%s) cancelled: %s", job.id, job.task_identifier, reason or "no reason given")
        if started and self._attempts.active:  # end the attempt for the counters
            self._attempts.skipped(job, f"cancelled: {reason}")
        retention = self.retention(job)
        if retention is None:
            self._completer.complete(job)
        else:
            self._completer.keep(kept_results.cancelled(job, reason, retention))
        self._events.emit("job:cancelled", worker_id=self._worker_id, job=job, reason=reason, started=started)

    def retention(self, job: Job) -> float | None:
        """Seconds to keep ``job``'s outcome (``None``: nothing is kept; see :mod:`backfill.core.run.kept_results`)."""
        return kept_results.retention_for(job, self._registry.get(job.task_identifier))

    def interrupted(self, job: Job) -> None:
        delay = self._interrupted_retry_delay
        message = "Interrupted: the worker shut down before the job finished"
        logger.warning("job %s (%s) interrupted by shutdown; retry in %ss", job.id, job.task_identifier, delay)
        self.failure(job, message, error=None, retry_delay=delay, interrupted=True)


def _planned(planner: RetryPlanner, job: Job, error: BaseException | None) -> RetryDecision | None:
    """The planner's decision; a planner that raises or answers nonsense leaves Graphile's backoff in charge
    (the failure must be recorded either way, or the job would stay locked)."""
    try:
        decision = planner(job, error)
    except Exception:
        logger.exception("retry planner %r raised on job %s; using Graphile's backoff", planner, job.id)
        return None
    if decision is not None and not isinstance(decision, RetryDecision):
        logger.error("retry planner %r returned %r, not a RetryDecision; using Graphile's backoff", planner, decision)
        return None
    return decision
