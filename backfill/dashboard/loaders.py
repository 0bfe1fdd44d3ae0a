"""What each page of the dashboard shows: its path, template, title and navigation entry, and the loader that
gathers its values by calling the JSON API's own handlers (so a query parameter means, and is checked, the same
in both)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from backfill.admin.context import AdminContext
from backfill.admin.params import MAX_BULK, query_bool
from backfill.admin.queries import AdminSql
from backfill.admin.routes import controls, dlq, fleet, jobs, overview
from backfill.core import JobState
from backfill.dlq import EntryState
from backfill.lanes.lane import BUILT_IN_LANES

Loader = Callable[[Request, AdminContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Page:
    path: str
    template: str
    title: str
    section: str  # the navigation entry it belongs to
    load: Loader


async def _overview(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {"figures": await overview.overview(request, ctx)}


async def _jobs(request: Request, ctx: AdminContext) -> dict[str, Any]:
    # The lanes to choose from: the built-in ones and the registered workers' (not the overview: a fresh one
    # costs a refresh, about 20 ms over a million jobs, for a list of names).
    sql: AdminSql = ctx.sql
    seen = [row["lane"] for row in await ctx.pool.fetch(sql.lanes_seen)]
    return {
        "listing": await jobs.list_jobs(request, ctx),
        "states": [state.value for state in JobState],
        "lanes": [*BUILT_IN_LANES, *(lane for lane in seen if lane not in BUILT_IN_LANES)],
        "max_bulk": MAX_BULK,
        "cancel_filter": _cancel_filter(request),
    }


# What a bulk cancel's filter can say (backfill.core.JobFilter); the list's other filters cannot be sent with it.
_CANCEL_FILTER_FIELDS = ("task", "queue", "state")


def _cancel_filter(request: Request) -> dict[str, str] | None:
    """The list's filter as a bulk cancel takes it, or ``None`` when the list is narrower than such a filter can
    say (a lane, a key, an error text...): "cancel all matching" must never reach jobs the page did not list."""
    given = _given_filters(request)
    if not given or not set(given) <= set(_CANCEL_FILTER_FIELDS):
        return None
    return given


def _given_filters(request: Request) -> dict[str, str]:
    """The list's filters as given (paging left out)."""
    return {name: value for name, value in request.query_params.items() if value and name not in ("after", "limit")}


async def _job(request: Request, ctx: AdminContext) -> dict[str, Any]:
    shown = await jobs.show_job(request, ctx)
    return {"shown": shown, "with_payload": query_bool(request, "include_payload")}


async def _dlq(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {
        "listing": await dlq.list_entries(request, ctx),
        "stats": await dlq.stats(request, ctx),
        "states": [state.value for state in EntryState],
        "max_bulk": MAX_BULK,
        # Every filter of the list is one the bulk actions take, so "all matching" is exactly what is listed.
        "dlq_filter": _given_filters(request),
    }


async def _dlq_entry(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {"entry": await dlq.show_entry(request, ctx), "with_payload": query_bool(request, "include_payload")}


async def _workers(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {"figures": await ctx.live.overview()}


async def _queues(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return {
        "figures": await ctx.live.overview(),
        "cancellations": (await controls.list_cancellations(request, ctx))["cancellations"],
    }


async def _cron(request: Request, ctx: AdminContext) -> dict[str, Any]:
    return await fleet.cron(request, ctx)


PAGES = (
    Page("/", "overview.html", "Overview", "overview", _overview),
    Page("/jobs", "jobs.html", "Jobs", "jobs", _jobs),
    Page("/jobs/{id}", "job.html", "Job", "jobs", _job),
    Page("/dlq", "dlq.html", "Dead letters", "dlq", _dlq),
    Page("/dlq/{id}", "dlq_entry.html", "Dead letter", "dlq", _dlq_entry),
    Page("/workers", "workers.html", "Workers", "workers", _workers),
    Page("/queues", "queues.html", "Queues and pauses", "queues", _queues),
    Page("/cron", "cron.html", "Cron", "cron", _cron),
)
NAVIGATION = (
    ("overview", "", "Overview"),
    ("jobs", "jobs", "Jobs"),
    ("dlq", "dlq", "Dead letters"),
    ("workers", "workers", "Workers"),
    ("queues", "queues", "Queues & pauses"),
    ("cron", "cron", "Cron"),
)
