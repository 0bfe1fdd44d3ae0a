"""Serving a registry over HTTP for Prometheus to scrape, on a thread that can be stopped; with health checks,
``/healthz`` and ``/readyz`` beside it (200 and ``ok``, or 503 and the reason, as plain text).

prometheus-client's ``start_http_server`` runs ``serve_forever`` with its default half-second poll, so stopping
it can block the caller that long; this server polls every 50 ms and ``close()`` waits for the thread.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

_POLL_SECONDS = 0.05
# What Prometheus expects of the classic text format (prometheus-client's CONTENT_TYPE_LATEST says the same).
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Check = Callable[[], tuple[bool, str]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would flood stderr."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never keeps the process alive


class _Server6(_Server):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running ``/metrics`` endpoint. ``close()`` stops it (also on leaving ``with``)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False
        self.host: str = str(server.server_address[0])
        self.port: int = int(server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port; waits up to one poll interval. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def serve_metrics(
    registry: CollectorRegistry,
    *,
    host: str = "0.0.0.0",
    port: int,
    liveness: Check | None = None,
    readiness: Check | None = None,
) -> MetricsServer:
    """Serve ``registry`` in Prometheus' text format at ``http://host:port/metrics`` (any other path answers
    too, like prometheus-client's own server) from a daemon thread. ``port=0`` picks a free port: read
    ``server.port``. ``liveness`` and ``readiness`` (see :mod:`backfill.metrics.health`) answer ``/healthz``
    and ``/readyz``; they are called on the server's thread."""
    return _serve(make_wsgi_app(registry), host=host, port=port, liveness=liveness, readiness=readiness)


def serve_text(
    render: Callable[[], str],
    *,
    host: str = "0.0.0.0",
    port: int,
    liveness: Check | None = None,
    readiness: Check | None = None,
) -> MetricsServer:
    """Like :func:`serve_metrics`, for a page made by ``render()`` at each scrape (in Prometheus' text format,
    version 0.0.4) rather than by a registry: a supervisor's page merged from its worker processes' pages.
    ``render`` is called on the server's thread."""
    return _serve(_text_app(render), host=host, port=port, liveness=liveness, readiness=readiness)


def _text_app(render: Callable[[], str]) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = render().encode()
        start_response(
            "200 OK",
            [("Content-Type", TEXT_CONTENT_TYPE), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")],
        )
        return [body]

    return app


def _serve(app: WsgiApp, *, host: str, port: int, liveness: Check | None, readiness: Check | None) -> MetricsServer:
    server_class = _Server6 if ":" in host else _Server
    checks = {path: check for path, check in (("/healthz", liveness), ("/readyz", readiness)) if check is not None}
    if checks:
        app = _with_checks(app, checks)
    server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": _POLL_SECONDS}, name="backfill-metrics", daemon=True
    )
    thread.start()
    return MetricsServer(server, thread)


def _with_checks(metrics: WsgiApp, checks: dict[str, Check]) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        check = checks.get(environ.get("PATH_INFO", ""))
        if check is None:
            return metrics(environ, start_response)
        try:
            ok, reason = check()
        except Exception as error:  # a broken check is a failed one, never a 500 with a traceback
            ok, reason = False, f"check failed ({type(error).__name__})"
        body = f"{reason}\n".encode()
        start_response(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    return app
