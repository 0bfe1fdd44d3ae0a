"""Serving a registry over HTTP for Prometheus to scrape, on a thread that can be stopped.

prometheus-client's ``start_http_server`` runs ``serve_forever`` with its default half-second poll, so stopping
it can block the caller that long; this server polls every 50 ms and ``close()`` waits for the thread.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from types import TracebackType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

_POLL_SECONDS = 0.05


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


def serve_metrics(registry: CollectorRegistry, *, host: str = "0.0.0.0", port: int) -> MetricsServer:
    """Serve ``registry`` in Prometheus' text format at ``http://host:port/metrics`` (any path answers, like
    prometheus-client's own server) from a daemon thread. ``port=0`` picks a free port: read ``server.port``."""
    server_class = _Server6 if ":" in host else _Server
    server = make_server(host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": _POLL_SECONDS}, name="backfill-metrics", daemon=True
    )
    thread.start()
    return MetricsServer(server, thread)
