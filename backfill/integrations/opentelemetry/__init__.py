"""OpenTelemetry for backfill (the ``otel`` extra, ``opentelemetry-api`` only): a ``send`` span for each enqueue,
a ``process`` span for each attempt, linked through the trace context the job carries in its
``backfill:trace`` flag; and a hook for error trackers. Opt-in, per client and per runner::

    from backfill.integrations.opentelemetry import instrument

    tracing = instrument(client=client, runner=runner)   # the global tracer provider unless one is given
    ...
    tracing.uninstrument()

Nothing is traced, and nothing costs anything, in a process that does not call :func:`instrument`.
See docs/how-to/tracing.md for the spans, their attributes, Node interop and the measured cost.

Names load on first use: :class:`FailureReporter` (and :mod:`.failures`) work without OpenTelemetry
installed; everything else imports ``opentelemetry``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill.integrations.opentelemetry.consumer import WorkerTracing
    from backfill.integrations.opentelemetry.failures import FailedAttempt, FailureReporter
    from backfill.integrations.opentelemetry.instrument import Instrumentation, instrument
    from backfill.integrations.opentelemetry.producer import ClientTracing

__all__ = [
    "ClientTracing",
    "FailedAttempt",
    "FailureReporter",
    "Instrumentation",
    "WorkerTracing",
    "instrument",
]

_WHERE = {
    "ClientTracing": "producer",
    "FailedAttempt": "failures",
    "FailureReporter": "failures",
    "Instrumentation": "instrument",
    "WorkerTracing": "consumer",
    "instrument": "instrument",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
