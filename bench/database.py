"""The benchmark database: where it is, and the harness's own view of each system's tables."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from bench.systems import System, quote_ident


@contextmanager
def database_url(given: str | None) -> Iterator[str]:
    """``given``, else ``DATABASE_URL``, else a throwaway embedded server (:mod:`backfill.embedded`)."""
    url = given or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from backfill.embedded import start_embedded_postgres

    with start_embedded_postgres(prefix="backfill-bench-pg-") as server:
        yield server.dsn


def with_application_name(dsn: str, name: str) -> str:
    """``dsn`` (a URL) whose connections call themselves ``name`` in ``pg_stat_activity``: asyncpg, psycopg
    and Node's pg all read ``application_name`` from the URL, so a worker's backends can be told apart from
    those of anyone else using the same server."""
    parts = urlsplit(dsn)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "application_name"]
    query.append(("application_name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


class BenchDatabase:
    """One connection the harness uses to prepare, clean and watch the systems' schemas."""

    def __init__(self, connection: asyncpg.Connection[Any]) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, dsn: str) -> BenchDatabase:
        return cls(await asyncpg.connect(dsn))

    async def close(self) -> None:
        await self.connection.close()

    async def server_version(self) -> str:
        return str(await self.connection.fetchval("show server_version"))

    async def recreate_schema(self, system: System) -> None:
        schema = quote_ident(system.schema)
        await self.connection.execute(f"drop schema if exists {schema} cascade; create schema {schema}")

    async def drop_schema(self, system: System) -> None:
        await self.connection.execute(f"drop schema if exists {quote_ident(system.schema)} cascade")

    async def clean(self, system: System) -> None:
        await self.connection.execute(system.tables.clean)

    async def vacuum(self, system: System) -> None:
        # Fresh statistics and visibility for every system alike, rather than whenever autovacuum wakes.
        for table in system.tables.vacuum:
            await self.connection.execute(f"vacuum analyze {table}")

    async def any_pending(self, system: System) -> bool:
        return await self.connection.fetchval(system.tables.any_pending) is not None

    async def count_pending(self, system: System) -> int:
        return int(await self.connection.fetchval(system.tables.count_pending))

    async def insert_backlog(self, system: System, jobs: int, *, due_in_seconds: float = 0.0) -> None:
        if system.tables.insert_backlog is None:
            raise ValueError(f"{system.name} has no backlog insert")
        await self.connection.execute(system.tables.insert_backlog, jobs, due_in_seconds)

    async def backend_pids(self, application_name: str) -> list[int]:
        rows = await self.connection.fetch(
            "select pid from pg_stat_activity where application_name = $1", application_name
        )
        return [int(row["pid"]) for row in rows]
