"""Figures by lane for the operator's commands (``backfill stats`` and ``backfill queues``).

A lane is the layer's reading of a job's priority and flags (:func:`backfill.lanes.lane.lane_of`), so these
queries live here rather than in the core's admin queries, which know nothing of lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from backfill.core.admin.queries import STATE_SQL
from backfill.core.db import Executor
from backfill.core.schema import SchemaName
from backfill.lanes.lane import lane_sql

STATES = ("waiting", "scheduled", "running", "retrying", "failed")


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
    rows = await connection.fetch(
        f"""
        select lane, {", ".join(f"count(*) filter (where state = '{s}')::int as {s}" for s in STATES)}
          from (select {lane_sql("j")} as lane, {STATE_SQL} as state
                  from {schema.qualify("_private_jobs")} as j) as jobs
         group by lane
         order by lane
        """
    )
    return [LaneStats(row["lane"], *(row[state] for state in STATES)) for row in rows]


async def queue_lanes(connection: Executor, schema: SchemaName) -> dict[str, tuple[str, ...]]:
    """The lanes of the jobs in each named queue that has jobs (a queue may hold several lanes' jobs)."""
    rows = await connection.fetch(
        f"""
        select q.queue_name, array_agg(distinct {lane_sql("j")} order by {lane_sql("j")}) as lanes
          from {schema.qualify("_private_jobs")} as j
          join {schema.qualify("_private_job_queues")} as q on q.id = j.job_queue_id
         group by q.queue_name
        """
    )
    return {row["queue_name"]: tuple(row["lanes"]) for row in rows}
