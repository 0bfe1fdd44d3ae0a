"""Serving the admin API from a runner: uvicorn on the runner's own event loop, on ``BACKFILL_ADMIN_PORT``.

The socket is bound here, before uvicorn starts, so that a port in use is a clear configuration error at start
rather than an exit from inside uvicorn, and so that port 0 (tests) reports the port it got. uvicorn's own signal
handling is left out: the runner owns SIGTERM and SIGINT, and stops this server with everything else.
uvicorn (part of the ``admin`` extra) is the ASGI server Starlette's authors maintain beside it; it speaks
HTTP/1.1 on asyncio without a thread, which a server of our own would have to reimplement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from backfill.admin.app import AdminApi
from backfill.core import ConfigurationError

logger = logging.getLogger("backfill.admin")


class _RunnerOwnedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runner handles the signals and stops us


class AdminServer:
    """``api`` served on ``host:port`` until :meth:`stop`."""

    def __init__(self, api: AdminApi, *, host: str, port: int) -> None:
        self.api = api
        self._host, self._port = host, port
        self._socket: socket.socket | None = None
        self._server: _RunnerOwnedServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._socket is not None
        return int(self._socket.getsockname()[1])

    async def start(self) -> None:
        host = self._host.strip("[]")  # an IPv6 address may come as a URL writes it ([::1])
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._socket = socket.create_server((host, self._port), family=family, reuse_port=False)
        except OSError as error:
            raise ConfigurationError(
                f"BACKFILL_ADMIN_PORT: cannot listen on {self._host}:{self._port} ({error.strerror or error})"
            ) from None
        config = uvicorn.Config(self.api, lifespan="off", log_config=None, access_log=False, server_header=False)
        self._server = _RunnerOwnedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]), name="backfill-admin-http")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigurationError("the admin API server stopped while starting")
            await asyncio.sleep(0.01)
        logger.info("admin API served on http://%s:%s/api (OpenAPI: /api/openapi.json)", self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        if self._socket is not None:
            self._socket.close()
        await self.api.close()
