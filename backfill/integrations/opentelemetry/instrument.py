"""``instrument()``: turn tracing on for a client, a runner or both, and get back what turns it off."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry.trace import TracerProvider, get_tracer

from backfill.core import ConfigurationError, Events
from backfill.integrations.opentelemetry import semconv
from backfill.integrations.opentelemetry.consumer import Propagation, WorkerTracing
from backfill.integrations.opentelemetry.failures import FailureCallback, FailureReporter
from backfill.integrations.opentelemetry.producer import ClientTracing

if TYPE_CHECKING:
    from backfill.client.async_client import BackfillClient
    from backfill.client.sync_client import SyncBackfillClient
    from backfill.runner.worker_runner import WorkerRunner

_VERSION = "1"  # the instrumentation scope's version: bumped when span names or attributes change


class Instrumentation:
    """What :func:`instrument` turned on. :meth:`uninstrument` (or leaving ``with``) turns it all off: the
    client's methods are its class's again, and once the attempts running at that moment have ended, no
    ``job:*`` listener of ours is left, so the workers are back on their fast path."""

    def __init__(self, worker_tracing: WorkerTracing, reporter: FailureReporter | None) -> None:
        self.worker_tracing = worker_tracing
        self.failure_reporter = reporter
        self._undo: list[Callable[[], None]] = []

    def observe_worker(self, events: Events, lane: str | None = None) -> None:
        """Trace the attempts of one worker (a core :class:`~backfill.core.Worker`'s ``events``, or a lane's:
        this is the shape of a runner's ``on_worker_events``)."""
        # The reporter first: on job:complete it runs while the attempt's span is still the current one. Both
        # detach from every worker they observe when closed (uninstrument).
        if self.failure_reporter is not None:
            self.failure_reporter.observe(events, lane)
        self.worker_tracing.observe(events, lane)

    def uninstrument(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        if self.failure_reporter is not None:
            self.failure_reporter.close()
        self.worker_tracing.close()

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstrument()


def instrument(
    *,
    client: BackfillClient | SyncBackfillClient | None = None,
    runner: WorkerRunner | None = None,
    tracer_provider: TracerProvider | None = None,
    propagation: Propagation = "link",
    on_failure: FailureCallback | None = None,
    final_failures_only: bool = False,
) -> Instrumentation:
    """Trace ``client``'s enqueues (a ``send`` span each, its context carried in the job) and ``runner``'s
    attempts (a ``process`` span each, linked to that context; ``propagation="child"`` also makes it the
    parent). ``tracer_provider``: the global one by default. ``on_failure`` is also called for every failed
    attempt (only final ones with ``final_failures_only``), while its span is current: see
    :mod:`~backfill.integrations.opentelemetry.failures`. Call :meth:`~Instrumentation.observe_worker` to
    trace a core ``Worker`` as well. Nothing else in the process is traced, or pays anything."""
    tracer = get_tracer(semconv.INSTRUMENTATION_NAME, _VERSION, tracer_provider)
    if on_failure is not None and not callable(on_failure):
        raise ConfigurationError(f"on_failure must be callable, not {type(on_failure).__name__}")
    reporter = FailureReporter(on_failure, final_only=final_failures_only) if on_failure is not None else None
    instrumentation = Instrumentation(WorkerTracing(tracer, propagation=propagation), reporter)
    if client is not None:
        instrumentation._undo.append(ClientTracing(tracer).instrument(client))
    if runner is not None:
        try:
            instrumentation._undo.append(runner.observe_workers(instrumentation.observe_worker))
        except BaseException:
            instrumentation.uninstrument()
            raise
    return instrumentation
