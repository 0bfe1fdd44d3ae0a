"""The JSON-lines protocol between the harness and the drivers.

A driver writes one JSON object per line on stdout, each with an ``event``:

* ``ready`` (``at_ms``): a worker is about to start; drain time counts from ``at_ms``;
* ``started`` (``at_ms``): the worker is running and may be idle-listening;
* ``result``: the command's outcome (``seconds`` for bulk enqueueing; ``count`` and ``latencies_ms`` for
  a worker).

Timestamps are wall-clock epoch milliseconds: the Node driver, the Python drivers and the harness run on
one machine and read the same clock, so a timestamp taken in one process can be compared in another.
Anything else a driver has to say goes to stderr, which the harness keeps for error reports.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

READY = "ready"
STARTED = "started"
RESULT = "result"


def now_ms() -> float:
    return time.time() * 1000.0


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def parse(line: bytes) -> dict[str, Any] | None:
    """The message on ``line``, or ``None`` for a line that is not one (stray output is ignored)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if isinstance(message, dict) and isinstance(message.get("event"), str):
        return message
    return None
