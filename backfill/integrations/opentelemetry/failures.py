"""Failed attempts for error trackers (Sentry and the like): one callback per failed attempt.

The callback gets a :class:`FailedAttempt`: the job, its attempt number, the exception (with its traceback,
as the handler raised it), whether the failure was final (no attempt left: the job goes to the dead-letter
queue) and the lane. It is told once the attempt's outcome is settled: after the retry planner decided
whether this failure is final, before the worker runs its next job on that slot. An ``async def`` callback
is scheduled on the loop, not awaited.

It listens to ``job:error``, ``job:failed`` and ``job:complete``, so jobs take the worker's observed path
while a reporter is attached (a few microseconds per job; see docs/how-to/tracing.md for the figures). A
callback that raises is logged and ignored: an error tracker's trouble must not stop the worker.

This module imports nothing of OpenTelemetry: a reporter works without the ``otel`` extra. When tracing is
on through :func:`~backfill.integrations.opentelemetry.instrument` (``on_failure=``), the attempt's span is
the current span while the callback runs, so a tracker that reads OpenTelemetry's context links the two.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from backfill.core import Event, Events, Job

logger = logging.getLogger("backfill.integrations.opentelemetry")


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """One failed attempt, as a :class:`FailureReporter` reports it."""

    job: Job
    error: BaseException  # a handler cancelled without an exception of its own: a RuntimeError naming it
    final: bool  # no attempt is left: the job failed for good (and goes to the dead-letter queue)
    lane: str | None  # the lane of the worker that ran it (None for a core Worker observed without one)
    worker_id: str

    @property
    def attempt(self) -> int:
        """Which attempt failed (1 for the first)."""
        return self.job.attempts

    @property
    def task(self) -> str:
        return self.job.task_identifier


FailureCallback = Callable[[FailedAttempt], object]


class FailureReporter:
    """Calls ``callback`` with a :class:`FailedAttempt` for every failed attempt of the workers it observes
    (only the final ones with ``final_only=True``). Attach it with :meth:`observe` (a lane worker's events:
    pass it as a runner's ``on_worker_events``, or to ``runner.observe_workers``) and detach with :meth:`close`."""

    def __init__(self, callback: FailureCallback, *, final_only: bool = False) -> None:
        if not callable(callback):
            raise TypeError(f"the failure callback must be callable, not {type(callback).__name__}")
        self._callback = callback
        self._final_only = final_only
        # Attempts between their job:error and their job:complete, by the identity of their Job: the same job
        # may run twice at once in one worker (a stale attempt and its replacement), as two Job objects.
        self._failing: dict[int, list[Any]] = {}
        self._subscriptions: list[Callable[[], None]] = []

    def observe(self, events: Events, lane: str | None = None) -> Callable[[], None]:
        """Report the failures ``events`` tells of; returns a function that stops it for these events."""
        subscriptions = [
            events.on("job:error", partial(self._failed_attempt, lane)),
            events.on("job:failed", self._final),
            events.on("job:complete", self._complete),
        ]
        self._subscriptions.extend(subscriptions)

        def stop() -> None:
            for unsubscribe in subscriptions:
                unsubscribe()

        return stop

    def close(self) -> None:
        """Stop reporting for every worker observed."""
        for unsubscribe in self._subscriptions:
            unsubscribe()
        self._subscriptions.clear()
        self._failing.clear()

    # The recorder emits job:error, then job:failed when nothing is left, then job:complete, one after the other
    # in the attempt's own task: finality is known by job:complete, and the attempt is still in progress.
    def _failed_attempt(self, lane: str | None, event: Event) -> None:
        job = event["job"]
        self._failing[id(job)] = [job, event["error"], False, lane, event["worker_id"]]

    def _final(self, event: Event) -> None:
        pending = self._failing.get(id(event["job"]))
        if pending is not None:
            pending[2] = True

    def _complete(self, event: Event) -> object:
        pending = self._failing.pop(id(event["job"]), None)
        if pending is None:
            return None
        job, error, final, lane, worker_id = pending
        if self._final_only and not final:
            return None
        attempt = FailedAttempt(job=job, error=error, final=final, lane=lane, worker_id=worker_id)
        try:
            return self._callback(attempt)  # an awaitable is scheduled by Events
        except Exception:
            logger.exception("failure callback %r raised on job %s; ignored", self._callback, job.id)
            return None
