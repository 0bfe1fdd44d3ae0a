"""Figures by lane for the operator's commands (``backfill stats`` and ``backfill queues``).

A lane is the layer's reading of a job's priority and flags (:func:`backfill.lanes.lane.lane_of`), so these
queries live here rather than in the core's admin queries, which know nothing of lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from backfill.core import SchemaName
from backfill.core.extension import Executor, JobSql, Statements
from backfill.lanes.lane import LaneSql

# The columns of lane_stats (sql/figures.sql), one per state, in this order.
STATES = ("waiting", "scheduled", "running", "retrying", "failed")


class LaneFiguresSql(Statements, file=("backfill.lanes.sql", "figures.sql")):
    """The figures' statements: the lane expression included from :class:`LaneSql`, the job's state from the
    core's :class:`~backfill.core.jobs.JobSql`."""

    includes = (LaneSql, JobSql)
    lane_stats: str
    queue_lanes: str


@dataclass(frozen=True, slots=True)
class LaneStats:
    """The jobs of one lane by state (see :class:`~backfill.core.admin.models.JobState`)."""

    lane: str
    waiting: int
    scheduled: int
    running: int
    retrying: int
    failed: int

    @property
    def total(self) -> int:
        return self.waiting + self.scheduled + self.running + self.retrying + self.failed


async def lane_stats(connection: Executor, schema: SchemaName) -> list[LaneStats]:
    """Every lane that has jobs, with its jobs by state, by lane name."""
    rows = await connection.fetch(LaneFiguresSql.for_schema(schema).lane_stats)
    return [LaneStats(row["lane"], *(row[state] for state in STATES)) for row in rows]


async def queue_lanes(connection: Executor, schema: SchemaName) -> dict[str, tuple[str, ...]]:
    """The lanes of the jobs in each named queue that has jobs (a queue may hold several lanes' jobs)."""
    rows = await connection.fetch(LaneFiguresSql.for_schema(schema).queue_lanes)
    return {row["queue_name"]: tuple(row["lanes"]) for row in rows}
