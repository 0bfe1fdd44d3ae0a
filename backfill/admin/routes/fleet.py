"""``/api/workers``, ``/api/cron`` and ``/api/audit``: who runs, what is scheduled, what operators did."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import INTEGER, LIMIT, Endpoint, Param
from backfill.admin.params import page_size, query_int
from backfill.admin.queries import AdminSql
from backfill.core.extension import BIGINT_MAX

# How far ahead a cron item's next run is looked for: a pattern that fires less often shows none.
_NEXT_RUN_HORIZON = timedelta(days=8)


async def workers(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {"workers": await ctx.utils.workers()}


async def cron(request: Request, ctx: AdminContext) -> dict[str, Any]:
    """The schedules Graphile's table knows (last run), with the serving runner's crontab when it has one (pattern,
    next run, backfill window): other runners' crontabs are in their processes only."""
    sql: AdminSql = ctx.sql
    known = {row["identifier"]: row for row in await ctx.pool.fetch(sql.known_crontabs)}
    items = ctx.runner.crontab if ctx.runner is not None else ()
    now = datetime.now(UTC)
    schedules: list[dict[str, Any]] = []
    for item in items:
        row = known.pop(item.identifier, None)
        upcoming = next(item.occurrences(now, now + _NEXT_RUN_HORIZON), None)
        schedules.append(
            {
                "identifier": item.identifier,
                "task": item.task,
                "pattern": item.pattern,
                "timezone": item.timezone,
                "fill_seconds": item.fill.total_seconds(),
                "next_run": upcoming,
                "last_run": row["last_execution"] if row is not None else None,
                "known_since": row["known_since"] if row is not None else None,
            }
        )
    for identifier, row in sorted(known.items()):
        schedules.append(
            {
                "identifier": identifier,
                "task": None,
                "pattern": None,
                "timezone": None,
                "fill_seconds": None,
                "next_run": None,
                "last_run": row["last_execution"],
                "known_since": row["known_since"],
            }
        )
    return {"schedules": schedules, "from_this_runner": ctx.runner is not None}


async def audit(request: Request, ctx: AdminContext) -> dict[str, Any]:
    limit = page_size(request)
    before = query_int(request, "before", default=None, low=1, high=BIGINT_MAX)
    sql: AdminSql = ctx.sql
    rows = await ctx.pool.fetch(sql.audit_page, before, limit + 1)
    entries = [{**dict(row), "target": json.loads(row["target"])} for row in rows[:limit]]
    return {"entries": entries, "next_before": entries[-1]["id"] if len(rows) > limit else None}


ENDPOINTS = (
    Endpoint("GET", "/api/workers", "Registered workers and every lock holder", workers, "workers"),
    Endpoint("GET", "/api/cron", "Cron schedules: next run, last run, backfill window", cron, "cron"),
    Endpoint(
        "GET",
        "/api/audit",
        "What was done through this API, newest first",
        audit,
        "audit",
        params=(Param("before", INTEGER, "the previous page's next_before"), LIMIT),
    ),
)
