"""The enqueue span: one PRODUCER span ``send <task>`` around each enqueue call, its context written into the
job(s) as their creation context.

Semantic conventions, "Producer spans": when no per-message "create" span exists, the context of the "send"
span is the creation context injected into the messages, and the span is then of kind PRODUCER. A bulk
enqueue gets one ``send`` span for the whole batch (``messaging.batch.message_count``) and all its jobs carry
that one context, rather than a "create" span and a context per job: jobs of one shape keep one flag set,
so the statement still sends what they share once per distinct combination instead of once per row, and
the worker's per-flag-set caches keep hitting (a traceparent per job would make every flag set distinct).

A flag a caller already set (``backfill:trace=...``, a context of their own) is kept as it is, as the
conventions ask of a user-provided creation context.

The client is instrumented by replacing its methods on the instance (``enqueue``, ``enqueue_many``; the
``enqueue_fast``/``_bulk``/``_critical`` shortcuts go through ``enqueue``). Nothing changes in the class, so
clients that are not instrumented pay nothing, and uninstrumenting deletes the instance attributes again.
A :class:`~backfill.client.sync_client.SyncBackfillClient` gets its own blocking wrappers, so that the span
starts in the caller's thread, inside the caller's current span (its private loop thread has no such span).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from backfill.core import ConfigurationError, Job
from backfill.integrations.opentelemetry import semconv
from backfill.integrations.opentelemetry.carrier import has_trace_flag, trace_flag

_MARK = "_backfill_opentelemetry"  # set on our wrappers, to refuse instrumenting one client twice
_METHODS = ("enqueue", "enqueue_many")


class ClientTracing:
    """Wraps clients' enqueue methods in ``send`` spans (see the module docstring)."""

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def instrument(self, client: BackfillClient | SyncBackfillClient) -> Callable[[], None]:
        """Trace ``client``'s enqueues; returns the function that undoes it."""
        if not isinstance(client, (BackfillClient, SyncBackfillClient)):
            raise ConfigurationError(
                f"client must be a BackfillClient or a SyncBackfillClient, not {type(client).__name__}"
            )
        if any(getattr(getattr(client, name), _MARK, False) for name in _METHODS):
            raise ConfigurationError("this client is traced already; uninstrument it first")
        before = {name: client.__dict__.get(name) for name in _METHODS}  # someone else's wrapper, if any
        if isinstance(client, SyncBackfillClient):
            wrappers = {
                "enqueue": self._sync_enqueue(client.enqueue),
                "enqueue_many": self._sync_many(client.enqueue_many),
            }
        else:
            wrappers = {"enqueue": self._enqueue(client.enqueue), "enqueue_many": self._many(client.enqueue_many)}
        for name, wrapper in wrappers.items():
            setattr(wrapper, _MARK, True)
            setattr(client, name, wrapper)

        def undo() -> None:
            for name, previous in before.items():
                if previous is None:
                    client.__dict__.pop(name, None)
                else:
                    setattr(client, name, previous)

        return undo

    # -- one job ------------------------------------------------------------------------------------------------

    def _enqueue(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def enqueue(task: str, payload: Any = None, **options: Any) -> Job:
            with self._send_span(task, None) as span:
                _carry(span, options)
                job: Job = await original(task, payload, **options)
                span.set_attribute(semconv.MESSAGE_ID, str(job.id))
                return job

        return enqueue

    def _sync_enqueue(self, original: Callable[..., Job]) -> Callable[..., Job]:
        def enqueue(task: str, payload: Any = None, **options: Any) -> Job:
            with self._send_span(task, None) as span:
                _carry(span, options)
                job = original(task, payload, **options)
                span.set_attribute(semconv.MESSAGE_ID, str(job.id))
                return job

        return enqueue

    # -- a batch ------------------------------------------------------------------------------------------------

    def _many(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def enqueue_many(requests: Sequence[Enqueue], **options: Any) -> Any:
            with self._send_span(_task_of(requests), len(requests)) as span:
                return await original(_carried(span, requests), **options)

        return enqueue_many

    def _sync_many(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def enqueue_many(requests: Sequence[Enqueue], **options: Any) -> Any:
            with self._send_span(_task_of(requests), len(requests)) as span:
                return original(_carried(span, requests), **options)

        return enqueue_many

    @contextmanager
    def _send_span(self, task: Any, batch: int | None) -> Iterator[Span]:
        attributes: dict[str, Any] = {
            semconv.MESSAGING_SYSTEM: semconv.SYSTEM,
            semconv.OPERATION_TYPE: semconv.SEND,
            semconv.OPERATION_NAME: semconv.SEND,
        }
        # The destination is the task; a batch of several tasks has none, and its span is named "send" alone
        # (the conventions omit {destination} when there is no one value for it).
        name = semconv.SEND
        if isinstance(task, str) and task:
            attributes[semconv.DESTINATION_NAME] = task
            name = f"{semconv.SEND} {task}"
        if batch is not None:
            attributes[semconv.BATCH_MESSAGE_COUNT] = batch
        # Exceptions are recorded here rather than by start_as_current_span, to add error.type as well.
        with self._tracer.start_as_current_span(
            name, kind=SpanKind.PRODUCER, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except BaseException as error:
                span.set_attribute(semconv.ERROR_TYPE, semconv.error_type(error))
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise


def _carry(span: Span, options: dict[str, Any]) -> None:
    """Add the trace flag to one enqueue's ``flags`` option. Flags that are not a list or tuple of strings
    are left for the client to refuse, with its own message."""
    flags = options.get("flags")
    if flags is not None and (not _strings(flags) or has_trace_flag(flags)):
        return
    flag = trace_flag(span)
    if flag is not None:
        options["flags"] = [*flags, flag] if flags else [flag]


def _carried(span: Span, requests: Sequence[Enqueue]) -> Sequence[Enqueue]:
    """``requests`` with the trace flag added, as copies: the caller's objects are theirs, and may be sent again.
    Requests with equal flags get one shared tuple, so the client still sees one shape for them."""
    flag = trace_flag(span)
    if flag is None or not isinstance(requests, Sequence):
        return requests
    with_flag: dict[tuple[str, ...], tuple[str, ...]] = {}
    carried: list[Enqueue] = []
    for request in requests:
        flags = request.flags if isinstance(request, Enqueue) else ()
        if not isinstance(request, Enqueue) or (flags is not None and not _strings(flags)):
            carried.append(request)  # the client reports it, by position
            continue
        key = tuple(flags or ())
        if has_trace_flag(key):
            carried.append(request)
            continue
        shared = with_flag.get(key)
        if shared is None:
            shared = with_flag[key] = (*key, flag)
        carried.append(dataclasses.replace(request, flags=shared))
    return carried


def _strings(flags: Any) -> bool:
    return type(flags) in (list, tuple) and all(type(flag) is str for flag in flags)


def _task_of(requests: Sequence[Enqueue]) -> str | None:
    """The one task of a batch, or ``None`` when it has several (or none)."""
    tasks = {getattr(request, "task", None) for request in requests} if isinstance(requests, Sequence) else set()
    if len(tasks) != 1:
        return None
    (task,) = tasks
    return task if isinstance(task, str) else None
