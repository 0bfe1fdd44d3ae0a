"""``GET /api/overview``: the fleet at a glance, per lane, named queue and task."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import Endpoint
from backfill.admin.queries import AdminSql
from backfill.control import PauseKind, list_pauses
from backfill.lanes.figures import STATES, lane_stats
from backfill.lanes.lane import BUILT_IN_LANES

WINDOWS = ("1m", "5m", "15m", "60m")


async def overview(request: Request, ctx: AdminContext) -> dict[str, Any]:
    sql: AdminSql = ctx.sql
    async with ctx.pool.acquire() as connection:
        ready = await connection.fetch(sql.ready_by)
        throughput = {row["lane"]: row for row in await connection.fetch(sql.throughput)}
        by_state = {stats.lane: stats for stats in await lane_stats(connection, ctx.schema)}
        pauses = await list_pauses(connection, ctx.schema)
    workers = await ctx.utils.workers()
    paused = {(p.kind, p.name) for p in pauses}
    ready_of: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in ready:
        ready_of[row["kind"]][row["name"]] = {
            "ready": row["ready"],
            "oldest_ready_seconds": row["oldest_ready_seconds"],
        }
    alive = [w for w in workers if w.registered and w.alive]
    lane_names = sorted(
        {*BUILT_IN_LANES, *ready_of["lane"], *by_state, *throughput, *(w.lane for w in alive if w.lane)},
        key=lambda name: (name not in BUILT_IN_LANES, name),
    )
    lanes = []
    for name in lane_names:
        holders = [w for w in alive if w.lane == name]
        states = by_state.get(name)
        lanes.append(
            {
                "name": name,
                "paused": (PauseKind.LANE, name) in paused,
                "slots": sum(w.concurrency or 0 for w in holders),
                "busy": sum(w.locked_jobs for w in holders),  # held: running, or claimed and about to run
                "workers": len(holders),
                **_ready(ready_of["lane"].get(name)),
                "jobs": {state: getattr(states, state) if states else 0 for state in STATES},
                "throughput": _throughput(throughput.get(name)),
            }
        )
    return {
        "lanes": lanes,
        "queues": [
            {"name": name, "paused": (PauseKind.QUEUE, name) in paused, **figures}
            for name, figures in sorted(ready_of["queue"].items())
        ],
        "tasks": [
            {"name": name, "paused": (PauseKind.TASK, name) in paused, **figures}
            for name, figures in sorted(ready_of["task"].items())
        ],
        "workers": {
            "alive": len(alive),
            "dead": sum(1 for w in workers if w.registered and not w.alive),
            "unregistered_lock_holders": sum(1 for w in workers if not w.registered),
        },
        "pauses": pauses,
    }


def _ready(figures: dict[str, Any] | None) -> dict[str, Any]:
    return figures if figures is not None else {"ready": 0, "oldest_ready_seconds": None}


def _throughput(row: Any) -> dict[str, Any]:
    """Attempts ended over each window, and the share that failed."""
    windows: dict[str, Any] = {}
    for window in WINDOWS:
        succeeded = row[f"succeeded_{window}"] if row is not None else 0
        failed = row[f"failed_{window}"] if row is not None else 0
        total = succeeded + failed
        windows[window] = {"succeeded": succeeded, "failed": failed, "failure_rate": failed / total if total else 0.0}
    return windows


ENDPOINTS = (
    Endpoint(
        "GET",
        "/api/overview",
        "The fleet at a glance",
        overview,
        "overview",
        description="Per lane: slots and busy slots of the live workers, jobs by state, ready jobs and the age of "
        "the oldest, attempts ended and failure rate over the last 1, 5, 15 and 60 minutes, paused or not. Per "
        "named queue and task: ready jobs and the oldest's age. Workers alive and dead; the pauses in force.",
    ),
)
