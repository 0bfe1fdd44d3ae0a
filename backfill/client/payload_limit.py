"""The payload size limit the client enforces at enqueue (``BACKFILL_MAX_PAYLOAD_BYTES``).

Why 1 MiB by default: a payload travels in every claim's result and is decoded with ``json.loads`` on the
worker's event loop, which a thread cannot take off the loop (the C decoder holds the GIL throughout).
Measured on the development machine (CPython 3.11): 1.2 MB of JSON decodes in 7 ms, 5.9 MB in 50 ms,
11.9 MB in 126 ms, with the loop stalled for as long each time, in a thread or not. 1 MiB keeps one payload's
stall under about 10 ms, well inside the loop monitor's 1 s threshold and a heartbeat's margin, while leaving
room for any reasonable job description (Graphile's advice is ids and small documents, not the data itself).
A deployment that needs more raises it; 0 turns the check off.
"""

from __future__ import annotations

from typing import Final, cast

from backfill.core import PayloadTooLargeError
from backfill.core.extension import check_int

DEFAULT_MAX_PAYLOAD_BYTES: Final = 1024 * 1024


def check_limit(value: object, *, field_name: str = "max_payload_bytes") -> int:
    """``value`` as a limit in bytes (0: none); anything else is a :class:`ConfigurationError` naming the field."""
    check_int(f"{field_name}:", value, 0, must="a number of bytes, 0 or more (0: no limit)")
    return cast(int, value)


def payload_size(payload_json: str) -> int:
    """Bytes of ``payload_json`` as UTF-8, what PostgreSQL stores and a worker decodes."""
    # isascii() is O(1) on CPython's compact strings, and then characters are bytes: no 1 MB copy to count.
    return len(payload_json) if payload_json.isascii() else len(payload_json.encode("utf-8", "surrogatepass"))


def enforce_limit(task: str, payload_json: str, limit: int) -> None:
    """Raise :class:`PayloadTooLargeError` when ``payload_json`` is over ``limit`` bytes (``0``: no limit)."""
    if limit and len(payload_json) * 4 > limit:  # at most 4 bytes a character: below that, no need to count
        size = payload_size(payload_json)
        if size > limit:
            raise PayloadTooLargeError(task, size, limit)
