"""The attempt span: one CONSUMER span ``process <task>`` per attempt, made from a worker's ``job:*`` events.

Why events and not interceptors: only the events tell how an attempt really ended. A ``before_run`` verdict,
a cancellation or a shutdown skip ``after_run``, and whether a failure is final is decided after it, by the
retry planner. The recorder emits ``job:start`` before the handler and ``job:error`` / ``job:failed`` /
``job:complete`` (or ``job:cancelled``) after it, synchronously, in the runner task that runs the attempt.
So the span is made current at ``job:start`` (the handler's own spans, its HTTP calls, its queries, become
its children; a synchronous handler's thread gets the context too) and the context is restored at the end,
in the same task.

Relation to the enqueue span (semantic conventions, "Consumer spans": a process span SHOULD link to the
message's creation context; making it the parent is allowed). By default (``propagation="link"``) the attempt
starts a trace of its own with a link to the job's creation context: a job may run hours later, be retried
for days, or be one of ten thousand enqueued in one batch, and a parent would stretch the enqueuing trace
over all of that. ``propagation="child"`` makes the attempt a child of that context as well (one trace from
the web request to the job), which reads best for short, single jobs. A job without a trace context (enqueued
untraced, by Node, by SQL, by cron) gets a root span without a link.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)

from backfill.core import Event, Events, Job
from backfill.integrations.opentelemetry import semconv
from backfill.integrations.opentelemetry.carrier import creation_context

Propagation = Literal["link", "child"]
# What ends an attempt, as messaging.backfill.job.outcome says it.
_SUCCESS, _SKIPPED, _CANCELLED, _RETRY, _FAILED = "success", "skipped", "cancelled", "retry", "failed"
_STATUS_TEXT_LIMIT = 256  # the status description is a summary; the full text is in the exception event


@dataclass(slots=True)
class _Attempt:
    span: Span
    token: Token[Context]  # what context.attach returned, to restore the runner's context at the end
    error: BaseException | None = None
    final: bool = False
    skipped: bool = False
    job: Job | None = field(default=None, repr=False)  # kept alive: its id() is our key


class WorkerTracing:
    """Traces the attempts of the workers whose events it observes. See the module docstring.

    :meth:`observe` takes one worker's events (and its lane's name), so it fits a runner's
    ``on_worker_events`` or ``observe_workers``, and a core :class:`~backfill.core.Worker`'s ``events``.
    :meth:`close` detaches from all of them; attempts running at that moment still get their span ended."""

    def __init__(self, tracer: Tracer, *, propagation: Propagation = "link") -> None:
        if propagation not in ("link", "child"):
            raise ValueError(f"propagation must be 'link' or 'child', not {propagation!r}")
        self._tracer = tracer
        self._child = propagation == "child"
        self._open: dict[int, _Attempt] = {}  # by id(job): see FailureReporter._failing for why not by job id
        self._starts: list[Callable[[], None]] = []
        self._ends: list[Callable[[], None]] = []
        self._closing = False

    def observe(self, events: Events, lane: str | None = None) -> Callable[[], None]:
        """Trace the attempts ``events`` tells of; returns a function that stops it for these events."""
        if self._closing:
            raise RuntimeError("this WorkerTracing was closed; make a new one")
        start = events.on("job:start", partial(self._start, lane))
        ends = [
            events.on("job:error", self._error),
            events.on("job:failed", self._final),
            events.on("job:skipped", self._skipped),
            events.on("job:complete", self._complete),
            events.on("job:cancelled", self._cancelled),
        ]
        self._starts.append(start)
        self._ends.extend(ends)

        def stop() -> None:
            start()
            for end in ends:
                end()

        return stop

    def close(self) -> None:
        """Trace no new attempt. The listeners that end spans stay until the running attempts have ended, so no
        span is left open and no runner keeps an attempt's context; then they go too, and with no ``job:*``
        listener left the workers return to their fast path."""
        self._closing = True
        for unsubscribe in self._starts:
            unsubscribe()
        self._starts.clear()
        if not self._open:
            self._detach_ends()

    @property
    def running(self) -> int:
        """Attempts whose span is open."""
        return len(self._open)

    def _detach_ends(self) -> None:
        for unsubscribe in self._ends:
            unsubscribe()
        self._ends.clear()

    def _start(self, lane: str | None, event: Event) -> None:
        job: Job = event["job"]
        created = creation_context(job.flags) if job.flags else None
        # An explicit, empty base context: the runner task inherited whatever context started the worker (an
        # application's start-up span, say), and an attempt must not become that span's child.
        parent = Context()
        links: tuple[Link, ...] = ()
        if created is not None:
            links = (Link(created),)
            if self._child:
                parent = set_span_in_context(NonRecordingSpan(created), parent)
        attributes: dict[str, Any] = {
            semconv.MESSAGING_SYSTEM: semconv.SYSTEM,
            semconv.OPERATION_TYPE: semconv.PROCESS,
            semconv.OPERATION_NAME: semconv.PROCESS,
            semconv.DESTINATION_NAME: job.task_identifier,
            semconv.MESSAGE_ID: str(job.id),
            semconv.CLIENT_ID: event["worker_id"],
            semconv.ATTEMPT: job.attempts,
            semconv.MAX_ATTEMPTS: job.max_attempts,
            semconv.PRIORITY: job.priority,
        }
        if lane is not None:
            attributes[semconv.LANE] = lane
        if job.queue_name is not None:
            attributes[semconv.QUEUE] = job.queue_name
        span = self._tracer.start_span(
            f"{semconv.PROCESS} {job.task_identifier}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=links,
        )
        token = otel_context.attach(set_span_in_context(span, parent))
        self._open[id(job)] = _Attempt(span, token, job=job)

    def _error(self, event: Event) -> None:
        attempt = self._open.get(id(event["job"]))
        if attempt is not None:
            attempt.error = event["error"]

    def _final(self, event: Event) -> None:
        attempt = self._open.get(id(event["job"]))
        if attempt is not None:
            attempt.final = True

    def _skipped(self, event: Event) -> None:
        attempt = self._open.get(id(event["job"]))
        if attempt is not None:
            attempt.skipped = True

    def _complete(self, event: Event) -> None:
        attempt = self._open.pop(id(event["job"]), None)
        if attempt is None:
            return
        span, error = attempt.span, attempt.error
        if error is None:
            span.set_attribute(semconv.OUTCOME, _SKIPPED if attempt.skipped else _SUCCESS)
        else:
            span.set_attribute(semconv.OUTCOME, _FAILED if attempt.final else _RETRY)
            span.set_attribute(semconv.ERROR_TYPE, semconv.error_type(error))
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _status_text(error)))
        self._end(attempt)

    def _cancelled(self, event: Event) -> None:
        # An operator's cancellation: the job is completed, neither retried nor failed, so no error status.
        # A job cancelled before it started never had a span (its id is not open).
        attempt = self._open.pop(id(event["job"]), None)
        if attempt is not None:
            attempt.span.set_attribute(semconv.OUTCOME, _CANCELLED)
            self._end(attempt)

    def _end(self, attempt: _Attempt) -> None:
        attempt.span.end()
        otel_context.detach(attempt.token)
        if self._closing and not self._open:
            self._detach_ends()


def _status_text(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= _STATUS_TEXT_LIMIT else text[: _STATUS_TEXT_LIMIT - 1] + "…"
