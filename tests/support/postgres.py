"""Where the tests find PostgreSQL, and how each test gets a database of its own.

``DATABASE_URL`` wins when set (it must point at a server where the user may create databases). Otherwise
a throwaway server is started from the binaries that the ``pgserver`` wheel ships, so a fresh machine needs
nothing else installed.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@dataclass(frozen=True)
class PostgresServer:
    """A server the tests may create databases on. ``admin_dsn`` points at its maintenance database."""

    admin_dsn: str
    handle: Any = None  # the pgserver object, kept alive for the session when we started one

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
    import pgserver

    data_dir = tempfile.mkdtemp(prefix="backfill-test-pg-")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
    return PostgresServer(admin_dsn=server.get_uri(), handle=server)


def unique_database_name(prefix: str = "bf_test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"
