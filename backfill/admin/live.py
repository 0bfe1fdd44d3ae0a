"""The overview's figures, cheap enough to refresh every few seconds from any number of browsers.

The dashboard polls them and ``GET /api/overview`` answers them, so their cost must not grow with the queue:

* **One snapshot for every viewer.** :meth:`LiveFigures.overview` answers from a snapshot at most ``max_age``
  seconds old, and one refresh runs at a time (the others wait for it): ten open dashboards cost what one does.
* **Bounded reads on every refresh** (``sql/admin.sql``): ready and scheduled jobs are counted over at most
  ``count_cap`` jobs per priority, read from Graphile's ``(priority, run_at)`` index (a count at the cap is shown
  as "at least"); the oldest ready job's age stays exact for the built-in lanes; throughput is at most 60 rows
  per lane of ``backfill_throughput``; the worker registry, the pauses and a capped dead-letter count are small.
* **Spaced full counts.** Two figures can only be had by reading the whole jobs table: the jobs each worker holds
  (Graphile has no index on ``locked_by``) and the jobs by state. They are counted again only once
  :data:`FULL_COUNT_SHARE` of the time since the last count started has passed (the queue gauges' rule,
  :class:`~backfill.metrics.scheduled_count.CountSpacing`): every refresh over a small table, about every 20 s
  and 100 s over a million jobs. ``counted_at`` says when they were taken.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import asyncpg

from backfill.admin.queries import AdminSql
from backfill.control import PauseKind, list_pauses
from backfill.core import SchemaName, WorkerInfo, WorkerUtils
from backfill.lanes.figures import STATES, LaneStats, lane_stats
from backfill.lanes.lane import BUILT_IN_LANES, BULK_LANE, FAST_LANE
from backfill.metrics.scheduled_count import CountSpacing

T = TypeVar("T")

# Jobs read per priority for a ready or scheduled count. Each read job is one heap visit (its flags say its
# lane): over a million jobs in six priorities, 10,000 cost 160-240 ms a sample, 1,000 cost 11-35 ms
# (bench.tools.dashboard_cost). Beyond it the page says "1,000+": enough to know a lane is backed up.
COUNT_CAP = 1_000
MAX_AGE_SECONDS = 2.0  # a snapshot is shared this long
FULL_COUNT_SHARE = 0.01  # the full-table counts take at most this share of the time
WINDOWS = {"1m": 1, "5m": 5, "15m": 15, "60m": 60}


class Spaced(Generic[T]):
    """A costly figure taken again only when its :class:`CountSpacing` says so; the last one and its time."""

    def __init__(self, count: Callable[[], Coroutine[Any, Any, T]], share: float) -> None:
        self._count = count
        self._spacing = CountSpacing(share)
        self.value: T | None = None
        self.counted_at: float | None = None  # time.time() of the last count

    async def get(self) -> T:
        started = time.monotonic()
        if self.value is None or self._spacing.due(started):
            self.value = await self._count()
            self.counted_at = time.time()
            self._spacing.ran(started, time.monotonic())
        return self.value


class LiveFigures:
    """The overview of one schema, shared by every request (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        schema: SchemaName,
        *,
        max_age: float = MAX_AGE_SECONDS,
        count_cap: int = COUNT_CAP,
        full_count_share: float = FULL_COUNT_SHARE,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._sql = AdminSql.for_schema(schema)
        self._utils = WorkerUtils(pool, schema=schema)
        self._max_age = max_age
        self._cap = count_cap
        self._lock = asyncio.Lock()
        self._snapshot: dict[str, Any] | None = None
        self._taken = float("-inf")
        self._holders: Spaced[list[WorkerInfo]] = Spaced(self._utils.workers, full_count_share)
        self._by_state: Spaced[list[LaneStats]] = Spaced(self._lane_stats, full_count_share)

    async def overview(self) -> dict[str, Any]:
        """The snapshot, taken again if older than ``max_age``."""
        async with self._lock:
            if self._snapshot is None or time.monotonic() - self._taken > self._max_age:
                self._snapshot = await self._take()
                self._taken = time.monotonic()
            return self._snapshot

    def forget(self) -> None:
        """Take a fresh snapshot next time (after an action, so that its page shows what it did)."""
        self._snapshot = None

    async def _lane_stats(self) -> list[LaneStats]:
        async with self._pool.acquire() as connection:
            return await lane_stats(connection, self._schema)

    async def _take(self) -> dict[str, Any]:
        sql, cap = self._sql, self._cap
        # One snapshot of the database (one now()): a job falling due between two reads is counted once, and
        # the minute the throughput is read for is the minute the snapshot says.
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            await connection.execute(sql.without_jit)
            now: datetime = await connection.fetchval(sql.database_now)
            ready = _by_kind(await connection.fetch(sql.ready_sample, cap))
            scheduled = _by_kind(await connection.fetch(sql.scheduled_sample, cap))
            minutes = await connection.fetch(sql.throughput_minutes)
            registry = await connection.fetch(sql.worker_registry)
            dead = await connection.fetchrow(sql.dead_letters, cap)
            assert dead is not None  # an aggregate: always one row
            pauses = await list_pauses(connection, self._schema)
        holders = await self._holders.get()
        by_state = {stats.lane: stats for stats in await self._by_state.get()}
        paused = {(p.kind, p.name) for p in pauses}
        series = _series(minutes, now)
        alive = [row for row in registry if row["alive"]]
        held = {w.worker_id: w.locked_jobs for w in holders}
        seen = {*ready["lane"], *scheduled["lane"], *by_state, *series, *(w["lane"] for w in alive if w["lane"])}
        ready_beyond = _CapReach(ready["priority"])
        scheduled_beyond = _CapReach(scheduled["priority"])
        lanes = []
        for name in [*BUILT_IN_LANES, *sorted(seen - set(BUILT_IN_LANES))]:  # fast, bulk, then custom lanes
            workers = [w for w in alive if w["lane"] == name]
            states = by_state.get(name)
            lane_minutes = series.get(name) or _empty_series(now)
            scheduled_row = scheduled["lane"].get(name)
            lanes.append(
                {
                    "name": name,
                    "paused": (PauseKind.LANE, name) in paused,
                    "slots": sum(w["concurrency"] or 0 for w in workers),
                    "busy": sum(held.get(w["worker_id"], 0) for w in workers),  # running, or claimed to run next
                    "workers": len(workers),
                    **_ready(ready["lane"].get(name), ready_beyond.may_hide(name)),
                    "scheduled": int(scheduled_row["scheduled"]) if scheduled_row is not None else 0,
                    "scheduled_capped": scheduled_beyond.may_hide(name),
                    "jobs": {state: getattr(states, state) if states else 0 for state in STATES},
                    "throughput": _windows(lane_minutes),
                    "minutes": lane_minutes,
                }
            )
        registered = {row["worker_id"] for row in registry}
        return {
            "at": now,
            "count_cap": cap,
            # Some priority hit the cap: a queue or task whose ready jobs all lie beyond it is not listed at all.
            "sample_capped": ready_beyond.any,
            "counted_at": _instant(self._by_state.counted_at, now),
            "lanes": lanes,
            "queues": [
                {"name": name, "paused": (PauseKind.QUEUE, name) in paused, **_ready(row, ready_beyond.any)}
                for name, row in sorted(ready["queue"].items())
            ],
            "tasks": [
                {"name": name, "paused": (PauseKind.TASK, name) in paused, **_ready(row, ready_beyond.any)}
                for name, row in sorted(ready["task"].items())
            ],
            "workers": {
                "alive": len(alive),
                "dead": len(registry) - len(alive),
                "unregistered_lock_holders": sum(1 for w in holders if w.worker_id not in registered),
            },
            "registry": [{**dict(row), "held_jobs": held.get(row["worker_id"], 0)} for row in registry],
            "dead_letters": {"dead": int(dead["dead"]), "capped": bool(dead["capped"])},
            "pauses": pauses,
        }


class _CapReach:
    """Which figures a sample's capped priorities may have cut short. The fast lane holds the negative
    priorities and the bulk lane the others, but a custom lane's jobs (and any queue's or task's) may have any
    priority: a capped priority may hide more of them, or all of them."""

    def __init__(self, priorities: Mapping[str, Mapping[str, Any]]) -> None:
        self._capped = [int(name) for name, row in priorities.items() if row["capped"]]
        self.any = bool(self._capped)

    def may_hide(self, lane: str) -> bool:
        if lane == FAST_LANE:
            return any(priority < 0 for priority in self._capped)
        if lane == BULK_LANE:
            return any(priority >= 0 for priority in self._capped)
        return self.any


def _by_kind(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Mapping[str, Any]]]:
    """A sample's rows by kind ("lane", "queue", "task", "priority") and name."""
    grouped: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    for row in rows:
        grouped[row["kind"]][row["name"]] = row
    return grouped


def _ready(row: Mapping[str, Any] | None, beyond_cap: bool) -> dict[str, Any]:
    """A ready count; ``beyond_cap``: a capped priority may hide more of its jobs, so the count is a lower bound
    (and for a custom lane, a queue or a task, whose jobs share priorities with others, so may the oldest age be)."""
    if row is None:
        return {"ready": 0, "ready_capped": beyond_cap, "oldest_ready_seconds": None}
    return {
        "ready": int(row["ready"]),
        "ready_capped": bool(row["capped"]) or beyond_cap,
        "oldest_ready_seconds": row["oldest_ready_seconds"],
    }


def _empty_series(now: datetime) -> list[dict[str, Any]]:
    first = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    return [{"minute": first + timedelta(minutes=i), "succeeded": 0, "failed": 0} for i in range(60)]


def _series(rows: Iterable[Mapping[str, Any]], now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per lane, the last 60 minutes oldest first, minutes without a row as zeros."""
    by_lane: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        minutes = by_lane.get(row["lane"])
        if minutes is None:
            minutes = by_lane[row["lane"]] = _empty_series(now)
        index = int((row["minute"] - minutes[0]["minute"]).total_seconds() // 60)
        if 0 <= index < 60:
            minutes[index]["succeeded"] += int(row["succeeded"])
            minutes[index]["failed"] += int(row["failed"])
    return by_lane


def _windows(minutes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Attempts ended over the last 1, 5, 15 and 60 minutes (the current one included), and the share failed."""
    windows: dict[str, dict[str, Any]] = {}
    for window, length in WINDOWS.items():
        succeeded = sum(m["succeeded"] for m in minutes[-length:])
        failed = sum(m["failed"] for m in minutes[-length:])
        total = succeeded + failed
        windows[window] = {"succeeded": succeeded, "failed": failed, "failure_rate": failed / total if total else 0.0}
    return windows


def _instant(wall_seconds: float | None, now: datetime) -> datetime | None:
    """A time.time() reading as a datetime in ``now``'s zone (the database's, which the rest of the snapshot uses)."""
    if wall_seconds is None:
        return None
    return datetime.fromtimestamp(wall_seconds, tz=now.tzinfo)
