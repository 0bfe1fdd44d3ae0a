"""The flag that carries a job's trace context: ``backfill:trace=<W3C traceparent>``.

A flag rather than a payload key because Node handlers read the payload as theirs (a key they do not expect
can break a strict schema), while a Node worker keeps flags it does not know and ignores them; and a flag
rather than a column because Graphile's table must stay identical to Node's. Only the ``traceparent`` goes
in (55 characters): ``tracestate`` and baggage are left out, since they may carry vendors' and applications'
values that have no business in a jobs table.

This module imports nothing of OpenTelemetry, so that the flag is registered (and its name reserved) by a
plain import, as the layer's other flags are.
"""

from __future__ import annotations

from backfill.core.extension import register_flag

TRACE = register_flag("trace", owner=__name__)
