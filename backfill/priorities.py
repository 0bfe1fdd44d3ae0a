"""The six named priority levels, and the band a priority belongs to (a bounded label for metrics).

Graphile runs lower priorities first; any integer in PostgreSQL's smallint range is a valid priority, the
named levels are only the ones backfill's conveniences and lanes are built around. Negative priorities are
the Fast lane's, zero and above the Bulk lane's (see :mod:`backfill.lanes.lane`).
"""

from __future__ import annotations

from enum import IntEnum


class Priority(IntEnum):
    """Named priorities; lower runs first. ``BULK_DEFAULT`` (0) is Graphile's default priority."""

    EMERGENCY = -20
    FAST_HIGH = -10
    FAST_DEFAULT = -5
    BULK_DEFAULT = 0
    BULK_LOW = 5
    BULK_LOWEST = 10


_ASCENDING = sorted(Priority)


def priority_band(priority: int) -> str:
    """The lower-cased name of the most urgent named level that ``priority`` reaches, e.g. ``fast_default``.

    A priority between two levels belongs to the more urgent one's band (-7 → ``fast_high``, 3 →
    ``bulk_default``), so a band never crosses the Fast/Bulk boundary at 0; anything more urgent than
    EMERGENCY is ``emergency`` and anything less urgent than BULK_LOWEST is ``bulk_lowest``.
    """
    band = _ASCENDING[0]
    for level in _ASCENDING:
        if level <= priority:
            band = level
        else:
            break
    return band.name.lower()


PRIORITY_BANDS: tuple[str, ...] = tuple(level.name.lower() for level in _ASCENDING)
