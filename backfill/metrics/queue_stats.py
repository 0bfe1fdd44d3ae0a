"""Queue depth gauges, read from the jobs table every few seconds.

Each round reports per lane and per named queue how many waiting jobs (``is_available``: unlocked, attempts left)
are ready (due now), how many are scheduled (due later) and how long the oldest ready one has been due, measured
on the database's clock; then, if ``backfill_dlq`` exists, the count of its dead rows (``sql/queue_stats.sql``).
The lane is computed in SQL the way :func:`backfill.lanes.lane.lane_of` does it
(:class:`backfill.lanes.lane.LaneSql`).

The ready jobs are counted afresh every round, and their count reads only them: each priority's jobs are read up
to the first one due later, so an idle queue over a million jobs scheduled for tomorrow costs a few index pages
a round. The scheduled jobs can only be counted by reading them all, so :meth:`QueueStatsCollector.run` counts
them again only while that takes at most 1% of the time (:mod:`backfill.metrics.scheduled_count`): every round
for a small backlog, every couple of minutes for a million jobs; :meth:`QueueStatsCollector.collect_once`
always counts everything.

Labels stay bounded:

* ``lane``: the collector's lanes (default: the metrics' lanes), always reported, 0 when empty; any other
  lane is summed into ``other``.
* ``queue``: named queues can be one per customer, so only the ``queue_limit`` (20) deepest are reported by
  name (most ready jobs first, then most scheduled, then by name); the rest are summed into ``other`` (oldest
  age: the largest). Jobs outside any named queue are in the lane gauges only. A ready job in a named queue
  may still wait for the queue's running job: Graphile runs one job per named queue at a time.

A lane or queue that empties is reported at 0 for five minutes (``keep_emptied``), so that every scrape
interval sees it drop, and then no longer (so queues that come and go do not pile up series). The gauges
describe the whole database: every process running a collector reports the same values, so aggregate them
with ``max``, not ``sum`` — or better, run one collector per database (say, in one worker process).

A round reads every ready job's row: about 60 ms for 100,000 ready jobs in 500 named queues, measured on the
development machine (PostgreSQL 15). Raise ``interval`` for deeper ready backlogs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg

from backfill.core import SchemaName
from backfill.core.extension import ConsecutiveFailures, Interval, JobSql, PeriodicService, Statements
from backfill.lanes.lane import LaneSql
from backfill.metrics.gauges import QueueSnapshot, WaitingJobs
from backfill.metrics.instruments import OTHER, BackfillMetrics
from backfill.metrics.scheduled_count import SCHEDULED_COUNT_SHARE, CountSpacing, ScheduledJobs

logger = logging.getLogger("backfill.metrics")

DEFAULT_QUEUE_LIMIT = 20
EMPTIED_KEPT_SECONDS = 300.0  # an emptied lane/queue stays at 0 this long: longer than any sane scrape interval
_WARN_EVERY_SECONDS = 60.0


class QueueStatsSql(Statements, file=("backfill.metrics.sql", "queue_stats.sql")):
    """The round's statements; the lane expression is :class:`LaneSql`'s, the bounded scan :class:`JobSql`'s."""

    includes = (LaneSql, JobSql)
    ready: str
    scheduled: str
    without_jit: str
    dead_by_task: str


class QueueStatsCollector:
    """Keeps ``metrics``' queue gauges up to date: :meth:`run` every ``interval`` seconds, or :meth:`collect_once`.

    ``pool`` is borrowed (one connection per round) and never closed here. ``scheduled_count_share`` is the most
    share of the time :meth:`run` spends counting the scheduled jobs (see the module's docstring).
    """

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        schema: SchemaName | str | None,
        metrics: BackfillMetrics,
        *,
        interval: float = 15.0,
        lanes: Iterable[str] | None = None,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        keep_emptied: float = EMPTIED_KEPT_SECONDS,
        scheduled_count_share: float = SCHEDULED_COUNT_SHARE,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        if queue_limit < 0:
            raise ValueError(f"queue_limit must be 0 or more, got {queue_limit!r}")
        self._scheduled_spacing = CountSpacing(scheduled_count_share, name="scheduled_count_share")
        self._pool = pool
        self._schema = SchemaName.coerce(schema)
        self._metrics = metrics
        self.interval = interval
        self.lanes: tuple[str, ...] = tuple(dict.fromkeys(lanes)) if lanes is not None else metrics.lanes
        self._lane_set = frozenset(self.lanes)
        self.queue_limit = queue_limit
        self.keep_emptied = keep_emptied
        self._sql = QueueStatsSql.for_schema(self._schema)
        # When each reported lane/queue label was last non-empty (monotonic seconds), for the 0-then-gone rule.
        self._lanes_seen: dict[str, float] = {}
        self._queues_seen: dict[str, float] = {}
        self._failures = ConsecutiveFailures(warning_interval=_WARN_EVERY_SECONDS)
        self._scheduled = ScheduledJobs()  # the last count of the jobs due later

    async def collect_once(self) -> QueueSnapshot:
        """Read the queues now, every figure counted afresh, update the gauges and return what they show."""
        return await self._collect(count_scheduled=True)

    async def _round(self) -> QueueSnapshot:
        """A round of :meth:`run`: the scheduled jobs are counted again only when that count is due."""
        return await self._collect(count_scheduled=self._scheduled_spacing.due(time.monotonic()))

    async def _collect(self, *, count_scheduled: bool) -> QueueSnapshot:
        async with self._pool.acquire() as connection:
            if count_scheduled:
                started = time.monotonic()
                async with connection.transaction():
                    await connection.execute(self._sql.without_jit)
                    self._scheduled = ScheduledJobs.from_rows(await connection.fetch(self._sql.scheduled))
                self._scheduled_spacing.ran(started, time.monotonic())
            rows = await connection.fetch(self._sql.ready, self._scheduled.counted_at)
            # The table is another component's and may not exist yet (or any more): checked every round.
            dead_rows = await connection.fetch(self._sql.dead_by_task) if rows[0]["dlq_exists"] else []
        snapshot = self._snapshot(rows, self._scheduled, self._dead_by_task(dead_rows))
        self._metrics.queue_gauges.update(snapshot)
        return snapshot

    async def run(self) -> None:
        """Collect every ``interval`` seconds until cancelled. A failed round is logged (a warning at the start
        of an outage, then at most once a minute) and the next round tries again: this never returns."""
        service = PeriodicService(
            name="queue-stats",
            what="queue statistics",
            run_once=self._round,
            # Not jittered: one collector per database is the advice, so there is no herd to spread.
            interval=Interval.around(self.interval, jitter=0),
            logger=logger,
            at_start=True,
            failures=self._failures,
            recovered="{what} work again after {failures} failed rounds",
        )
        await service.run()

    @property
    def consecutive_failures(self) -> int:
        """Rounds of :meth:`run` that failed since the last one that worked."""
        return self._failures.count

    def _dead_by_task(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        # Task labels bounded as the counters' are: the metrics' named tasks (always, 0 when none), else "other".
        by_task = dict.fromkeys(sorted(self._metrics.tasks), 0)
        for row in rows:
            label = self._metrics.task_label(row["task_identifier"])
            by_task[label] = by_task.get(label, 0) + int(row["dead"])
        return by_task

    def _snapshot(
        self, rows: Sequence[Mapping[str, Any]], scheduled: ScheduledJobs, dead_by_task: dict[str, int]
    ) -> QueueSnapshot:
        by_lane = _waiting(rows, scheduled.lanes, by_lane=True)
        lanes: dict[str, WaitingJobs] = {}
        for lane, waiting in by_lane.items():
            label = lane if lane in self._lane_set else OTHER
            lanes[label] = lanes[label].plus(waiting) if label in lanes else waiting
        queues = list(_waiting(rows, scheduled.queues, by_lane=False).items())
        now = time.monotonic()
        return QueueSnapshot(
            lanes=_with_emptied(lanes, self._lanes_seen, now, self.keep_emptied, always=self.lanes),
            queues=_with_emptied(self._capped(queues), self._queues_seen, now, self.keep_emptied, always=()),
            dead_letters=sum(dead_by_task.values()),
            dead_letters_by_task=dead_by_task,
            collected_at=time.time(),
        )

    def _capped(self, queues: list[tuple[str, WaitingJobs]]) -> dict[str, WaitingJobs]:
        queues.sort(key=lambda item: (-item[1].ready, -item[1].scheduled, item[0]))
        capped: dict[str, WaitingJobs] = {}
        for index, (name, waiting) in enumerate(queues):
            # A real queue named "other" shares the label with the rest: summed, never reported twice.
            label = name if index < self.queue_limit else OTHER
            capped[label] = capped[label].plus(waiting) if label in capped else waiting
        return capped


def _waiting(
    ready_rows: Sequence[Mapping[str, Any]], scheduled: Mapping[str, int], *, by_lane: bool
) -> dict[str, WaitingJobs]:
    """The waiting jobs per lane (``by_lane``) or per named queue: the ready ones from the ``ready`` rows, the
    scheduled ones from the last count less those of them that are ready by now."""
    waiting: dict[str, WaitingJobs] = {}
    for row in ready_rows:
        if row["by_lane"] is None or row["by_lane"] != by_lane:  # the lone row when nothing is ready; the others
            continue
        name = row["lane"] if by_lane else row["queue_name"]
        still_scheduled = max(0, scheduled.get(name, 0) - int(row["due_since_count"]))
        waiting[name] = WaitingJobs(int(row["ready"]), still_scheduled, float(row["oldest_ready_age"]))
    for name, count in scheduled.items():
        waiting.setdefault(name, WaitingJobs(0, count))
    return waiting


def _with_emptied(
    current: dict[str, WaitingJobs], seen: dict[str, float], now: float, keep: float, *, always: Iterable[str]
) -> dict[str, WaitingJobs]:
    """``current`` plus a 0 for each label in ``always`` and each seen non-empty less than ``keep`` seconds ago;
    ``seen`` is updated (labels past the window are forgotten)."""
    result = dict(current)
    for label in current:
        seen[label] = now
    for label in always:
        result.setdefault(label, WaitingJobs())
    for label, last in list(seen.items()):
        if label in result:
            continue
        if now - last < keep:
            result[label] = WaitingJobs()
        else:
            del seen[label]
    return result
