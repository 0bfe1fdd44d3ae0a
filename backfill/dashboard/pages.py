"""The dashboard's pages: each one a template and a loader that calls the JSON API's own handlers.

A page asked for with ``X-Backfill-Live: 1`` answers only its ``live`` block: the figures the script refreshes in
place. Errors are shown on the page with the API's message (a bad filter is a 400 that names the field; a
database failure a 503), never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from backfill.admin.context import AdminContext
from backfill.admin.errors import ApiError
from backfill.admin.params import MAX_BULK, query_bool
from backfill.admin.queries import AdminSql
from backfill.admin.routes import controls, dlq, fleet, jobs, overview
from backfill.admin.security import AccessPolicy
from backfill.core import DatabaseError, JobState
from backfill.core.extension import scrub
from backfill.dashboard import login
from backfill.dashboard.render import environment
from backfill.dlq import EntryState
from backfill.lanes.lane import BUILT_IN_LANES

logger = logging.getLogger("backfill.dashboard")

LIVE_HEADER = "x-backfill-live"
REFRESH_SECONDS = 5
# Nothing from elsewhere: scripts and styles are the package's own files (no inline script or style at all).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

Loader = Callable[[Request, AdminContext], Awaitable[dict[str, Any]]]
ContextSource = Callable[[], Awaitable[AdminContext]]


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


class Dashboard:
    """Renders the pages of one :class:`~backfill.admin.AdminApi`."""

    def __init__(self, context: ContextSource, policy: AccessPolicy) -> None:
        self._context = context
        self._policy = policy
        self._env = environment(read_only=policy.read_only)

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Route(page.path, self._handler(page), methods=["GET"]) for page in PAGES]
        routes += login.routes(self.render_plain)
        routes.append(Mount("/static", app=StaticFiles(packages=[("backfill.dashboard", "static")]), name="static"))
        return routes

    def common(self, request: Request, section: str, title: str) -> dict[str, Any]:
        """What every template gets: where the dashboard is mounted, who is looking, what they may do."""
        state = request.scope.get("state", {})
        session = state.get("session")
        sessions = self._policy.sessions()
        caller = state.get("caller")
        return {
            "root": request.scope.get("root_path", ""),
            "title": title,
            "section": section,
            "navigation": NAVIGATION,
            "read_only": self._policy.read_only,
            "csrf": sessions.csrf_token(session) if sessions is not None and session is not None else "",
            "signed_in": caller is not None and caller.via == "session",
            "refresh_seconds": REFRESH_SECONDS,
            "request": request,
            "query": request.query_params,
        }

    def render_plain(self, request: Request, template: str, values: dict[str, Any], status: int = 200) -> Response:
        context = {**self.common(request, "", values.get("title", "backfill")), **values}
        return self._html(self._env.get_template(template).render(context), status)

    def _handler(self, page: Page) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            status, values = 200, {}
            try:
                values = await page.load(request, await self._context())
            except ApiError as error:
                status, values = error.status, {"error": error.message}
            except (DatabaseError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("dashboard page %s failed: %s", page.path, scrub(str(error)))
                status, values = 503, {"error": f"the database failed: {scrub(str(error))}"}
            context = {**self.common(request, page.section, page.title), "error": None, **values}
            template = self._env.get_template("error.html" if status != 200 else page.template)
            if request.headers.get(LIVE_HEADER) == "1" and status == 200:
                html = "".join(template.blocks["live"](template.new_context(context)))
            else:
                html = template.render(context)
            return self._html(html, status)

        answer.__name__ = f"page_{page.template.removesuffix('.html')}"
        return answer

    @staticmethod
    def _html(html: str, status: int) -> Response:
        return HTMLResponse(html, status_code=status, headers={"content-security-policy": CONTENT_SECURITY_POLICY})


def dashboard_routes(context: ContextSource, policy: AccessPolicy) -> list[BaseRoute]:
    """The dashboard's routes, for :class:`~backfill.admin.AdminApi` to serve beside the JSON API."""
    return Dashboard(context, policy).routes()
