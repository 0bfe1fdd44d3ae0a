"""A TCP proxy a test can cut and restore: the database "goes away" for the code behind it (connections reset,
new ones refused) while PostgreSQL itself, and the test's own connections, stay up."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def server_address(dsn: str) -> tuple[str, int] | str:
    """Where the server of ``dsn`` listens: ``(host, port)``, or the path of its unix socket (the embedded test
    server listens on a socket only: ``postgresql://postgres:@/postgres?host=/tmp/...``)."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    host = parts.hostname or query.get("host") or "/var/run/postgresql"
    port = parts.port or int(query.get("port", 5432))
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def through(dsn: str, port: int) -> str:
    """``dsn`` pointed at ``127.0.0.1:port`` (a proxy), user, password and database kept."""
    parts = urlsplit(dsn)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key not in {"host", "port"}]
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query)))


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` (a host and port, or a unix socket's path); :meth:`cut`
    resets every connection and stops listening, :meth:`restore` listens again on the same port. Runs on the
    test's event loop."""

    def __init__(self, target: tuple[str, int] | str) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, as a dead network path or a killed server would give
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if isinstance(self._target, str):
                upstream_reader, upstream_writer = await asyncio.open_unix_connection(self._target)
            else:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
