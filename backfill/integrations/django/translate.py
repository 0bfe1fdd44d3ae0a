"""How a Django task becomes a backfill job and back: pure functions, no database and no Django settings.

* identifier — the task function's module path (``shop.tasks.send_receipt``), as Django names it
  (``Task.module_path``): the worker imports it back, and operators see it in ``backfill jobs`` and the
  dashboard.
* payload — ``{"args": [...], "kwargs": {...}}``, JSON as Django requires of task arguments.
* priority — Django runs higher first (-100..100, default 0), Graphile lower first: backfill's priority is the
  negation. A positive Django priority is a negative backfill one, which backfill runs in its Fast lane.
* queue_name — Django's ``default`` queue is backfill's built-in lanes (chosen by priority); any other queue
  name is the backfill lane of the same name (``BACKFILL_LANES=emails=4`` on the workers).
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from backfill.core import JobSpecError
from backfill.lanes.lane import check_lane_name

DEFAULT_QUEUE = "default"
PAYLOAD_KEYS = frozenset({"args", "kwargs"})
# "module.Class: message" or "Class: message" (a builtin), as backfill writes last_error (core/error_text.py).
_ERROR_TYPE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def backfill_priority(django_priority: int) -> int:
    """Django's priority (higher first) as backfill's (lower first): 10 → -10, 0 → 0, -100 → 100."""
    return -int(django_priority)


def django_priority(priority: int) -> int:
    """The inverse of :func:`backfill_priority`."""
    return -int(priority)


def lane_for_queue(queue_name: str) -> str | None:
    """The custom lane a Django queue runs in; ``None`` for the default queue (the Fast and Bulk lanes).
    Raises :class:`~backfill.core.JobSpecError` for a name that cannot name a lane."""
    if queue_name == DEFAULT_QUEUE:
        return None
    return check_lane_name(queue_name, field="queue_name")


def encode_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The job's payload: the arguments as JSON values (tuples become lists, as Django normalises them).
    Raises :class:`TypeError` naming the argument, never its value, when one is not JSON."""
    payload = {"args": list(args), "kwargs": dict(kwargs)}
    try:
        # A round trip: what the worker will receive is what the caller's TaskResult shows.
        decoded: dict[str, Any] = json.loads(json.dumps(payload, allow_nan=False))
    except (TypeError, ValueError):
        raise TypeError(f"task arguments must be JSON values: {_first_bad_argument(args, kwargs)} is not") from None
    return decoded


def _first_bad_argument(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    named = [(f"argument {position}", value) for position, value in enumerate(args)]
    named += [(f"keyword argument {key!r}", value) for key, value in kwargs.items()]
    for name, value in named:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return f"{name} (a {type(value).__name__})"
    return "a keyword's name"


def decode_arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` from a job's payload; :class:`~backfill.core.JobSpecError` for any other shape (a job
    enqueued by hand, say), which fails the attempt without calling the task."""
    if not isinstance(payload, dict) or not set(payload) <= PAYLOAD_KEYS:
        raise JobSpecError("payload", 'must be {"args": [...], "kwargs": {...}} for a Django task')
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise JobSpecError("payload", "args must be a list and kwargs an object")
    return args, kwargs


def exception_class_path(error_text: str | None) -> str:
    """The exception's import path from backfill's error text (``shop.errors.OutOfStock: ...`` or
    ``ValueError: ...``), as Django's ``TaskError.exception_class_path`` wants it (``builtins.ValueError``).
    Text that does not start with a class name (a Node worker's message) gives ``builtins.Exception``."""
    match = _ERROR_TYPE.match(error_text or "")
    if match is None:
        return "builtins.Exception"
    name = match.group(1)
    if "." in name:
        return name
    builtin = getattr(builtins, name, None)
    is_exception = isinstance(builtin, type) and issubclass(builtin, BaseException)
    return f"builtins.{name}" if is_exception else "builtins.Exception"
