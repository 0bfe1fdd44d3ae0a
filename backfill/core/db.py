"""Small helpers for talking to PostgreSQL through asyncpg.

backfill accepts either a pool or a single connection wherever it needs the database, so that callers can
enqueue inside their own transaction. It never closes a pool or connection that the caller owns.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backfill.core.errors import ConfigurationError, DatabaseError

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


class LazyPool:
    """The pool behind an API object: the caller's (used as is, never closed), or one opened from a DSN on first
    use and closed by :meth:`close` (after which the next use opens a new one)."""

    def __init__(self, database: str | asyncpg.Pool[Any], *, max_size: int, prepared_statements: bool = True) -> None:
        self._dsn = database if isinstance(database, str) else None
        self._pool: asyncpg.Pool[Any] | None = database if isinstance(database, asyncpg.Pool) else None
        self._max_size = max_size
        self._statement_cache_size = 100 if prepared_statements else 0  # 0 for PgBouncer in transaction mode
        self._opening = asyncio.Lock()
        # The process the pool at hand belongs to: a forked child must not use it (see _forget_if_forked).
        self._pid = os.getpid()

    @property
    def is_open(self) -> bool:
        """Whether a pool is at hand now (the caller's, or ours and not closed)."""
        return self._pool is not None

    async def get(self) -> asyncpg.Pool[Any]:
        """The pool, opened now if it is ours and not open yet (again, in a forked child)."""
        self._forget_if_forked()
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                assert self._dsn is not None
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._max_size, statement_cache_size=self._statement_cache_size
                    )
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    raise DatabaseError(f"cannot connect to {redact_dsn(self._dsn)}: {error}") from error
            return self._pool

    async def close(self) -> None:
        """Close the pool this object opened; a pool the caller passed in stays open. In a forked child the
        parent's pool is only forgotten: its connections are the parent's to close."""
        if self._dsn is not None:
            self._forget_if_forked()
        if self._dsn is not None and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _forget_if_forked(self) -> None:
        """In a child forked after the pool was made, drop the parent's pool without touching it."""
        if self._pid == os.getpid():
            return
        if self._dsn is None:
            # The caller's pool: backfill cannot open its replacement, and using it would interleave the
            # child's messages with the parent's on the same sockets.
            raise DatabaseError(
                "an asyncpg pool passed in was created before this process forked (pid "
                f"{self._pid} → {os.getpid()}); a pool cannot cross a fork: create it in the child, or pass a "
                "DSN so backfill opens one per process"
            )
        abandon_after_fork(self._pool, self._opening)
        self._pool = None
        self._opening = asyncio.Lock()  # the parent's may be bound to the parent's loop
        self._pid = os.getpid()

    @asynccontextmanager
    async def connection(self, what: str, *, missing_hint: str) -> AsyncIterator[Executor]:
        """A pooled connection; database errors raised inside come out as :class:`DatabaseError` saying ``what``
        failed, with ``missing_hint`` when the error is a missing table, function or schema."""
        pool = await self.get()
        try:
            async with pool.acquire() as connection:
                yield connection
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError, asyncpg.InvalidSchemaNameError) as error:
            raise DatabaseError(f"{what} failed: {error} ({missing_hint})") from error
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseError(f"{what} failed: {error}") from error


# What a forked child inherited from its parent and must neither use nor close. Closing an asyncpg connection
# politely sends Terminate on the parent's session; even garbage collection would abort it, which unregisters
# its socket from the epoll instance the child shares with the parent's loop. So the child keeps a reference
# for good: a few idle file descriptors, never read or written.
_ABANDONED_AFTER_FORK: list[object] = []


def abandon_after_fork(*objects: object) -> None:
    """Keep ``objects`` (a parent's pool, loop, thread) alive and untouched for the rest of this process."""
    _ABANDONED_AFTER_FORK.extend(item for item in objects if item is not None)


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
