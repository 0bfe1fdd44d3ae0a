"""Attempts reported in batches, for observers that count rather than react: metrics, sampled success logs.

A listener of a per-job event (``job:start``, ``job:success`` …) is called once per job with an
:class:`~backfill.core.events.Event` built for it, and it sends every job down the worker's observed path;
at thousands of jobs a second that is most of what observing costs. An ``attempts:batch`` listener is
called instead at most once per turn of the event loop, with every attempt that started or ended since the
previous batch, as plain tuples:

* ``started``: ``(job, started_at)`` pairs, ``started_at`` being the wall clock (``time.time()``) at the start;
* ``succeeded``: ``(job, duration)`` pairs, in seconds;
* ``failed``: :class:`AttemptFailure` records (retried or final, timed out, interrupted by shutdown);
* ``skipped``: ``(job, reason)`` pairs, for attempts an interceptor completed without running them.

The fast path stays fast while only batch listeners observe: recording an attempt is two list appends and
three clock reads, inline in the runner's loop. The batch is emitted on the next loop turn (``call_soon``),
so an observer is never more than one turn behind, and before the worker writes the attempt's result it has
been reported.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from backfill.core.events import Events
from backfill.core.jobs import Job

BATCH_EVENT = "attempts:batch"


class AttemptFailure(NamedTuple):
    """A failed attempt, as the ``failed`` list of an ``attempts:batch`` event reports it."""

    job: Job
    error: BaseException  # for a failure without an exception (a cancelled handler), a RuntimeError naming it
    duration: float | None  # None: cut short before the handler's time was measured
    final: bool  # no attempt is left: the job failed for good
    timed_out: bool  # the handler ran past its deadline and was cancelled
    interrupted: bool  # the worker's shutdown cut the attempt short (it is retried)


class AttemptLog:
    """Collects one worker's attempts and emits them as ``attempts:batch`` events. See the module docstring.

    ``active`` says whether anyone listens; the owner refreshes it (:meth:`refresh`) when the listeners
    change, and nothing is recorded while it is false. The lists live as long as the log (a flush copies and
    empties them), so the worker's runners may append to ``started`` and ``succeeded`` directly and then
    call :meth:`recorded`, which is what the fast path does.
    """

    def __init__(self, events: Events, worker_id: str) -> None:
        self._events = events
        self._worker_id = worker_id
        self.active = False
        self.scheduled = False
        self.started: list[tuple[Job, float]] = []
        self.succeeded: list[tuple[Job, float]] = []
        self._failed: list[AttemptFailure] = []
        self._skipped: list[tuple[Job, str]] = []

    def refresh(self) -> None:
        self.active = self._events.listens(BATCH_EVENT)

    def failed(self, failure: AttemptFailure) -> None:
        self._failed.append(failure)
        self.recorded()

    def skipped(self, job: Job, reason: str) -> None:
        self._skipped.append((job, reason))
        self.recorded()

    def recorded(self) -> None:
        """Something was recorded: make sure a batch goes out on the next loop turn."""
        if self.scheduled:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # recorded outside a loop (a test driving the recorder by hand): report at once
            self.flush()
            return
        self.scheduled = True

    def flush(self) -> None:
        """Emit what was recorded since the last batch (nothing when nothing was)."""
        self.scheduled = False
        if not (self.started or self.succeeded or self._failed or self._skipped):
            return
        started, succeeded = self.started.copy(), self.succeeded.copy()
        failed, skipped = self._failed, self._skipped
        self.started.clear()
        self.succeeded.clear()
        self._failed, self._skipped = [], []
        self._events.emit(
            BATCH_EVENT,
            worker_id=self._worker_id,
            started=started,
            succeeded=succeeded,
            failed=failed,
            skipped=skipped,
        )
