"""Writing a span's context into a job's flags, and reading it back.

Always W3C Trace Context, whatever the application's global propagator is: the flag is read by backfill
workers in any process, so its format must not depend on one process's configuration (see :mod:`.flag` for
why only the ``traceparent``). A value that is not a valid traceparent (a flag set by hand, by SQL, by Node)
reads as no context at all, and the attempt is traced as a root.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext, get_current_span, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from backfill.core.extension import value_of
from backfill.integrations.opentelemetry.flag import TRACE

_W3C = TraceContextTextMapPropagator()
_TRACEPARENT = "traceparent"


def trace_flag(span: Span) -> str | None:
    """``backfill:trace=<traceparent>`` for ``span``; ``None`` when it has no valid context (no SDK installed,
    or a non-recording span without ids), so that an untraced process writes no flag at all."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=set_span_in_context(span, Context()))
    traceparent = carrier.get(_TRACEPARENT)
    return TRACE.with_value(traceparent) if traceparent else None


def has_trace_flag(flags: Iterable[str] | None) -> bool:
    return value_of(flags, TRACE) is not None


def creation_context(flags: Iterable[str] | None) -> SpanContext | None:
    """The span context a job was created in, from its ``backfill:trace`` flag; ``None`` without a valid one."""
    traceparent = value_of(flags, TRACE)
    if traceparent is None:
        return None
    extracted = get_current_span(_W3C.extract({_TRACEPARENT: traceparent}, context=Context())).get_span_context()
    return extracted if extracted.is_valid else None
