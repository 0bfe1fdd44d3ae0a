"""What is kept of a job that asked to keep its outcome: the retention that applies, the return value as JSON.

A job keeps its outcome when it carries the flag ``backfill:result=<seconds>`` (``keep_result=`` at enqueue) or
its task declares ``keep_result``; the flag wins. Nothing here runs for other jobs: the worker sends those down
its fast path and completes them with the plain ``complete_jobs`` statement.

The return value must become JSON without ever failing the job: the handler has done its work, and failing the
attempt would run it again. A value that cannot be kept (not JSON-serialisable, larger than
:data:`MAX_RESULT_BYTES`) is recorded as "no value" with a note that says why, and the job still succeeds.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from backfill.core.jobs import Job, retention_of
from backfill.core.run.completer import KeptOutcome
from backfill.core.tasks import TaskDefinition

# The largest return value kept, as JSON: the default payload limit's size. A result is read back whole by
# every wait() on it, so a larger one belongs in storage of its own, with its address as the result.
MAX_RESULT_BYTES = 1024 * 1024


def retention_for(job: Job, definition: TaskDefinition | None) -> float | None:
    """Seconds to keep ``job``'s outcome: its flag's, else its task's; ``None``: keep nothing."""
    if job.flags:
        seconds = retention_of(job.flags)
        if seconds is not None:
            return seconds
    return definition.keep_result if definition is not None else None


def result_json(value: Any) -> tuple[str | None, str | None]:
    """``value`` as JSON text to keep, and ``None``; or ``None`` and a note saying why it cannot be kept.

    ``None`` (a handler that returns nothing) is kept as JSON ``null``. Pydantic models and dataclass instances
    are kept as their fields. The note names the value's type, never the value."""
    not_kept = "the return value was not kept: it is not JSON-serialisable"
    try:
        dump = getattr(value, "model_dump", None)
        if callable(dump) and not isinstance(value, type):  # a pydantic model, found without importing pydantic
            value = dump(mode="json", by_alias=True)  # the form its own model_validate reads back
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
    except Exception as error:  # the model's own error may quote its values: its type only
        return None, f"{not_kept} ({type(error).__name__} converting it)"
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except Exception as error:  # the encoder names a type, or says NaN, circular, too deep: never a value
        return None, f"{not_kept} ({type(error).__name__}: {error})"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate in a string: escaped JSON is still the same value
        text = json.dumps(json.loads(text), ensure_ascii=True, separators=(",", ":"))
        size = len(text)
    if size > MAX_RESULT_BYTES:
        return None, f"the return value was not kept: its JSON is {size} bytes, more than {MAX_RESULT_BYTES}"
    return text, None


def succeeded(job: Job, value: Any, duration: float | None, retention: float) -> KeptOutcome:
    """The kept outcome of an attempt that succeeded with ``value``."""
    text, note = result_json(value)
    return KeptOutcome(job, "succeeded", text, note, duration, retention)


def skipped(job: Job, reason: str, retention: float) -> KeptOutcome:
    """An interceptor completed the job without running it: succeeded, with no value and the reason."""
    return KeptOutcome(job, "succeeded", None, f"skipped: {reason}", None, retention)


def cancelled(job: Job, reason: str, retention: float) -> KeptOutcome:
    """An operator cancelled the job, running or not."""
    return KeptOutcome(job, "cancelled", None, reason or None, None, retention)
