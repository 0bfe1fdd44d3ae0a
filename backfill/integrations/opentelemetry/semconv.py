"""The names this integration puts on spans, from the OpenTelemetry semantic conventions for messaging spans.

Followed: semantic conventions v1.27 and later (checked against the registry of
``opentelemetry-semantic-conventions`` 0.66b2), where the producer operation is ``send`` (it was ``publish``
before 1.27) and ``messaging.operation.type`` replaced ``messaging.operation``. The messaging conventions are
still "Development" upstream; the names are spelled out here rather than imported from the incubating
semconv package, so the extra needs ``opentelemetry-api`` alone and a rename upstream cannot break an import.

System-specific attributes live under ``messaging.backfill.`` as the conventions require of a system's own.
"""

from __future__ import annotations

# The value of messaging.system. Not one of the well-known values (the list is open): jobs written by Node's
# graphile-worker carry no trace context, and the spans are backfill's.
SYSTEM = "backfill"
INSTRUMENTATION_NAME = "backfill.integrations.opentelemetry"

MESSAGING_SYSTEM = "messaging.system"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
DESTINATION_NAME = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_MESSAGE_COUNT = "messaging.batch.message_count"
CLIENT_ID = "messaging.client.id"
ERROR_TYPE = "error.type"

SEND = "send"
PROCESS = "process"

# backfill's own: where the job runs and how this attempt ended.
LANE = "messaging.backfill.lane"
QUEUE = "messaging.backfill.queue"
PRIORITY = "messaging.backfill.job.priority"
ATTEMPT = "messaging.backfill.job.attempt"
MAX_ATTEMPTS = "messaging.backfill.job.max_attempts"
OUTCOME = "messaging.backfill.job.outcome"  # success, skipped, cancelled, retry (an attempt is left), failed


def error_type(error: BaseException) -> str:
    """``error.type`` as the conventions ask: the exception's fully-qualified class name (builtins unqualified)."""
    cls = type(error)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
