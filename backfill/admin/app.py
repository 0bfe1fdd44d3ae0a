"""The admin API as an ASGI application: :class:`AdminApi`, to mount in an application or serve on its own.

    api = AdminApi(os.environ["DATABASE_URL"], token=os.environ["ADMIN_TOKEN"])
    app = Starlette(routes=[Mount("/backfill", app=api)])      # or FastAPI's app.mount(...)
    ...
    await api.close()                                          # at shutdown: its pool

``backfill run`` serves one itself when ``BACKFILL_ADMIN_PORT`` is set (:mod:`backfill.admin.server`). Every
request first passes the :class:`~backfill.admin.security.AdminGuard`; handlers answer JSON, and errors are
``{"error": {"status", "message", "field"}}`` with a 4xx (nothing changed) or a 503 (the database failed).

The dashboard (:mod:`backfill.dashboard`) is served from the same app, under the same guard: its pages at ``/``,
the JSON API at ``/api``.

Starlette (an optional extra, ``backfill[admin]``) does the routing and the request/response plumbing: a small,
well-kept ASGI toolkit that FastAPI is built on, so the API mounts in the frameworks Python services use.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from backfill.admin.context import AdminContext
from backfill.admin.endpoints import Endpoint, openapi
from backfill.admin.errors import ApiError
from backfill.admin.live import LiveFigures
from backfill.admin.queries import AdminSql
from backfill.admin.routes import ENDPOINTS
from backfill.admin.security import AccessPolicy, AdminGuard, Receive, Scope, Send
from backfill.core import ConfigurationError, DatabaseError, JobSpecError, SchemaName, WorkerUtils
from backfill.core.extension import LazyPool, scrub
from backfill.dlq import DeadLetterQueue
from backfill.jsonable import to_jsonable
from backfill.results.reader import OutcomeReader
from backfill.results.waiter import OutcomeWaiter
from backfill.tasks.catalog import TaskCatalog

if TYPE_CHECKING:
    from backfill.runner import WorkerRunner

logger = logging.getLogger("backfill.admin")

POOL_SIZE = 4  # the API's own connections: operators' requests never take a worker's
# On the API's own connections: no JIT (its statements are bounded, or page through an index: a generic plan of
# the job list compiled with JIT took 0.4-3 s over a million jobs, where the plan itself reads a few pages), and
# a statement timeout, so that a filter that matches little and walks a big table cannot hold a connection long.
ADMIN_SERVER_SETTINGS = {"jit": "off", "statement_timeout": "30s", "application_name": "backfill-admin"}
OPENAPI_PATH = "/api/openapi.json"


class AdminApi:
    """The admin API over one schema, and the web dashboard beside it (``dashboard=False``: the JSON API only).
    ``token``: required of every request (else loopback requests only); ``read_only``: refuse every change;
    ``runner``: the runner serving it, for its crontab."""

    def __init__(
        self,
        database: str | asyncpg.Pool[Any],
        *,
        schema: str | SchemaName | None = None,
        token: str | None = None,
        read_only: bool = False,
        runner: WorkerRunner | None = None,
        dashboard: bool = True,
    ) -> None:
        if not isinstance(database, (str, asyncpg.Pool)) or database == "":
            raise ConfigurationError("AdminApi needs a database URL or an asyncpg.Pool")
        try:
            self.policy = AccessPolicy(token, read_only)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        self.schema = SchemaName.coerce(schema)
        self._pool = LazyPool(database, max_size=POOL_SIZE, server_settings=ADMIN_SERVER_SETTINGS)
        self._runner = runner
        self._context: AdminContext | None = None
        self.endpoints: tuple[Endpoint, ...] = ENDPOINTS
        self.openapi = openapi(ENDPOINTS, title="backfill admin API", version=_version())
        routes: list[BaseRoute] = [Route(e.path, self._route(e), methods=[e.method]) for e in ENDPOINTS]
        routes.append(Route(OPENAPI_PATH, self._openapi, methods=["GET"]))
        if dashboard:
            from backfill.dashboard import dashboard_routes  # Jinja2: only when the pages are served

            routes += dashboard_routes(self._context_now, self.policy)
        app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})  # type: ignore[dict-item]
        self._app = AdminGuard(app, self.policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def close(self) -> None:
        """Close the API's pool (a pool passed in is left open)."""
        if self._context is not None:
            await self._context.waiter.close()
        await self._pool.close()

    async def _context_now(self) -> AdminContext:
        if self._context is None:
            pool = await self._pool.get()
            catalog = TaskCatalog(self.schema)
            self._context = AdminContext(
                pool=pool,
                schema=self.schema,
                utils=WorkerUtils(pool, schema=self.schema),
                dlq=DeadLetterQueue(pool, schema=self.schema),
                sql=AdminSql.for_schema(self.schema),
                live=LiveFigures(pool, self.schema),
                outcomes=OutcomeReader(
                    self._pool.get, self.schema, lambda task: catalog.known_defaults(self._pool.get, task)
                ),
                waiter=OutcomeWaiter(self._pool.get),
                runner=self._runner,
            )
        return self._context

    def _route(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            try:
                context = await self._context_now()
                value = await endpoint.handler(request, context)
                if endpoint.writes:
                    context.live.forget()  # the next overview shows what this changed
            except ApiError as error:
                return JSONResponse(error.body(), status_code=error.status)
            except (ConfigurationError, JobSpecError) as error:  # the APIs below name the value at fault
                return JSONResponse(ApiError(400, scrub(str(error))).body(), status_code=400)
            except (DatabaseError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                logger.warning("admin %s %s failed: %s", endpoint.method, endpoint.path, scrub(str(error)))
                return JSONResponse(ApiError(503, f"the database failed: {scrub(str(error))}").body(), status_code=503)
            return JSONResponse(to_jsonable(value))

        answer.__name__ = endpoint.handler.__name__
        return answer

    async def _openapi(self, request: Request) -> Response:
        return JSONResponse(self.openapi)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """Starlette's own refusals (no such route, method not allowed) as the API's JSON errors."""
    return JSONResponse(ApiError(error.status_code, str(error.detail)).body(), status_code=error.status_code)


def _version() -> str:
    try:
        return importlib.metadata.version("backfill")
    except importlib.metadata.PackageNotFoundError:
        return "0"
