"""Small helpers for talking to PostgreSQL through asyncpg.

backfill accepts either a pool or a single connection wherever it needs the database, so that callers can
enqueue inside their own transaction. It never closes a pool or connection that the caller owns.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backfill.core.errors import ConfigurationError

# asyncpg's pool hands out proxies of Connection; both expose the same query API.
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
ConnectionSource: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

MIN_SERVER_VERSION_NUM = 120000


@asynccontextmanager
async def connection_from(source: ConnectionSource) -> AsyncIterator[Executor]:
    """Yield a connection: one acquired from ``source`` if it is a pool, else ``source`` itself."""
    if isinstance(source, asyncpg.Pool):
        async with source.acquire() as connection:
            yield connection
    else:
        yield source


def database_url_from_env(value: str | None = None) -> str:
    """The DSN given, else ``DATABASE_URL``; a clear error when neither is set."""
    dsn = value or os.environ.get("DATABASE_URL")
    if not dsn:
        raise ConfigurationError("DATABASE_URL is not set and no database URL was given")
    return dsn


def redact_dsn(dsn: str) -> str:
    """The DSN with every password replaced by ``***``, for logs and error messages.

    Covers the URL's userinfo, a ``password=`` query parameter (asyncpg accepts both) and libpq's
    keyword/value form (``host=db password=...``), which a misconfigured variable may hold.
    """
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return "<unparsable database URL>"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if password is None and not any(key == "password" for key, _ in query):
        return dsn  # untouched: urlunsplit would not give back every spelling (e.g. postgresql:///db) as is
    if password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if any(key == "password" for key, _ in query):
        query = [(key, "***" if key == "password" else value) for key, value in query]
        parts = parts._replace(query=urlencode(query, safe="*/"))
    return urlunsplit(parts)


# password=value, password = 'quoted value' (libpq allows spaces around '=' and single-quoted values).
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)")
