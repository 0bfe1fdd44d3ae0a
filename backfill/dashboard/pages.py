"""Serving the dashboard's pages (:mod:`backfill.dashboard.loaders` says what each shows): rendering, live
fragments, errors, the login routes and the static files.

A page asked for with ``X-Backfill-Live: 1`` answers only its ``live`` block: the figures the script refreshes in
place. Errors are shown on the page with the API's message (a bad filter is a 400 that names the field; a
database failure a 503), never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from backfill.admin.context import AdminContext
from backfill.admin.errors import ApiError
from backfill.admin.security import AccessPolicy
from backfill.core import DatabaseError
from backfill.core.extension import scrub
from backfill.dashboard import login
from backfill.dashboard.loaders import NAVIGATION, PAGES, Page
from backfill.dashboard.render import environment

logger = logging.getLogger("backfill.dashboard")

LIVE_HEADER = "x-backfill-live"
REFRESH_SECONDS = 5
# Nothing from elsewhere: scripts and styles are the package's own files (no inline script or style at all).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

ContextSource = Callable[[], Awaitable[AdminContext]]


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
