"""Lanes: slices of the jobs table, each run by its own core worker with its own concurrency.

* The **Fast lane** runs jobs with a negative priority, the **Bulk lane** jobs with priority 0 and above.
  Because each lane has its own slots, a fast job starts as soon as a Fast slot is free, however many long
  bulk jobs are running.
* A **custom lane** (``reports``, say) runs only the jobs enqueued into it, with its own concurrency, so one
  kind of work can neither starve nor be starved by the rest. A job is put in a custom lane with two flags:
  ``backfill:lane`` (which the Fast and Bulk lanes refuse) and ``backfill:lane=<name>`` (which that lane
  requires). Flags are part of Graphile's schema, so the lane survives restarts; a Node worker ignores it.

A serial queue (Graphile's ``queue_name``) is something else: one job at a time per queue name across all
workers. A job may be in a serial queue and a lane at once.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from types import MappingProxyType

from backfill.core import ConfigurationError, JobSlice, JobSpecError
from backfill.core.extension import Statements, check_int, is_set, register_flag, value_of

FAST_LANE = "fast"
BULK_LANE = "bulk"
BUILT_IN_LANES = (FAST_LANE, BULK_LANE)

# Every custom-lane job carries both forms: the bare flag lets the built-in lanes refuse all custom-lane jobs
# with one `?|` test, whatever lanes exist; the valued flag (backfill:lane=<name>) is what its own lane requires.
LANE = register_flag("lane", owner=__name__)
# The two forms by name, for the modules that splice them into SQL.
LANE_FLAG = LANE.bare
LANE_FLAG_PREFIX = LANE.prefix

_LANE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_lane_name(name: object, *, field: str = "lane") -> str:
    """``name`` if it can name a custom lane: 1-40 of a-z, 0-9, '_' and '-', starting with a letter."""
    if not isinstance(name, str) or not _LANE_NAME.match(name):
        raise JobSpecError(
            field, f"must be 1-40 lower-case letters, digits, '_' or '-' starting with a letter, got {name!r}"
        )
    if name in BUILT_IN_LANES:
        raise JobSpecError(field, f"{name!r} is a built-in lane, chosen by priority; give a priority instead")
    return name


def lane_flags(name: str) -> tuple[str, str]:
    """The two flags that put a job in custom lane ``name``."""
    return (LANE.bare, LANE.with_value(check_lane_name(name)))


def lane_of(priority: int, flags: Collection[str] | None) -> str:
    """The lane a job with this priority and these flags belongs to."""
    if is_set(flags, LANE):
        name = value_of(flags, LANE)
        if name is not None:
            return name
    return FAST_LANE if priority < 0 else BULK_LANE


class LaneSql(Statements, file=("backfill.lanes.sql", "lane.sql")):
    """:func:`lane_of` as SQL (the part ``lane_of_job``), for the statements that count jobs by lane."""

    literals = MappingProxyType(
        {
            "lane_flag": LANE_FLAG,
            "lane_flag_prefix": LANE_FLAG_PREFIX,
            "lane_name_start": len(LANE_FLAG_PREFIX) + 1,  # substr's 1-based position of the name in the flag
            "fast_lane": FAST_LANE,
            "bulk_lane": BULK_LANE,
        }
    )
    lane_of_job: str


@dataclass(frozen=True, slots=True)
class Lane:
    """A lane a worker process runs: its name and how many of its jobs may run at once."""

    name: str
    concurrency: int

    def __post_init__(self) -> None:
        if self.name not in BUILT_IN_LANES:
            try:
                check_lane_name(self.name)
            except JobSpecError as error:
                raise ConfigurationError(f"lane name: {error}") from None
        check_int(f"lane {self.name!r}: concurrency", self.concurrency, 1, must="a positive integer")

    @property
    def is_custom(self) -> bool:
        return self.name not in BUILT_IN_LANES

    @property
    def job_slice(self) -> JobSlice:
        """The jobs this lane runs: what a core worker's options are given to run exactly them."""
        if self.name == FAST_LANE:
            return JobSlice(max_priority=-1, forbidden_flags=(LANE.bare,))
        if self.name == BULK_LANE:
            return JobSlice(min_priority=0, forbidden_flags=(LANE.bare,))
        return JobSlice(required_flags=(LANE.with_value(self.name),))


def parse_lanes(text: str) -> tuple[Lane, ...]:
    """Custom lanes from ``"reports=3,exports=1"`` (the form ``BACKFILL_LANES`` takes)."""
    lanes: list[Lane] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, count = part.partition("=")
        if not sep or not count.strip().isdigit():
            raise ConfigurationError(f"custom lane {part!r} must be written name=concurrency, e.g. reports=3")
        lane = Lane(name.strip(), int(count))
        if not lane.is_custom:
            raise ConfigurationError(
                f"{lane.name!r} is a built-in lane; set FAST_QUEUE_CONCURRENCY or BULK_QUEUE_CONCURRENCY instead"
            )
        if any(existing.name == lane.name for existing in lanes):
            raise ConfigurationError(f"custom lane {lane.name!r} is defined twice")
        lanes.append(lane)
    return tuple(lanes)
