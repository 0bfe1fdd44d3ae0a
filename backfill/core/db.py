"""Small helpers for talking to PostgreSQL through asyncpg.

backfill accepts either a pool or a single connection wherever it needs the database, so that callers can
enqueue inside their own transaction. It never closes a pool or connection that the caller owns.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

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
    """The DSN with any password replaced by ``***``, for logs and error messages."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return dsn
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
