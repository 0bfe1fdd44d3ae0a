"""Printing results: aligned tables and short lines for people, JSON for scripts.

Results go to stdout, and only results: with ``--json`` stdout holds exactly one JSON document. Notes for
people (what was skipped, how to get the next page) go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from backfill.jsonable import to_jsonable

NONE = "-"  # how an empty cell reads in a table
_CELL_WIDTH = 48  # longer cell text (an error message, a long key) is cut so rows stay on one line


def print_json(value: Any) -> None:
    print(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def note(message: str) -> None:
    """A line for people, on stderr so it never mixes with results."""
    print(message, file=sys.stderr)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[str] = ()) -> str:
    """Columns padded to their widest cell; columns named in ``right`` (numbers) aligned right."""
    cells = [[cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.rjust(width) if header in right else value.ljust(width)
            for value, width, header in zip(values, widths, headers, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def cell(value: Any) -> str:
    """One table cell: one line, at most _CELL_WIDTH characters."""
    if value is None or value == "":
        return NONE
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, timedelta):
        return duration(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (set, frozenset, list, tuple)):
        return ",".join(sorted(str(item) for item in value)) or NONE
    text = str(value).strip().splitlines()[0] if str(value).strip() else NONE
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


def timestamp(value: datetime) -> str:
    """UTC, to the second: every row in the same zone whatever the database's TimeZone."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(value: timedelta) -> str:
    """``45s``, ``3m12s``, ``2h05m``, ``1d03h``: the two largest units, for ages and intervals."""
    seconds = int(value.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{secs:02d}s"
    return f"{sign}{secs}s"


def age(value: datetime | None, now: datetime) -> str:
    return NONE if value is None else duration(now - value) + " ago"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
