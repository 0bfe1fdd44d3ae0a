"""Small helpers for talking to PostgreSQL through asyncpg.

backfill accepts either a pool or a single connection wherever it needs the database, so that callers can
enqueue inside their own transaction. It never closes a pool or connection that the caller owns.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeAlias

import asyncpg

from backfill.core.errors import ConfigurationError, DatabaseError
from backfill.core.secrets import check_dsn, redact_dsn, remember_dsn, scrub

__all__ = [
    "MIN_SERVER_VERSION_NUM",
    "ConnectionSource",
    "Executor",
    "LazyPool",
    "StatelessReleaseConnection",
    "connect",
    "connection_from",
    "create_pool",
    "database_url_from_env",
    "mark_stateless",
    "redact_dsn",
    "reset_unless_stateless",
]

# asyncpg's pool hands out proxies of Connection; both expose the same query API.
Executor: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
ConnectionSource: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

MIN_SERVER_VERSION_NUM = 120000


@asynccontextmanager
async def connection_from(source: ConnectionSource, *, stateless: bool = False) -> AsyncIterator[Executor]:
    """Yield a connection: one acquired from ``source`` if it is a pool, else ``source`` itself.

    ``stateless``: the caller only runs statements that leave no session state behind (no ``SET``, ``LISTEN``,
    session advisory lock, cursor or temporary table). When the block ends without an error on a connection of
    a pool opened by :class:`LazyPool`, its release then skips the reset query (see
    :class:`StatelessReleaseConnection`)."""
    if isinstance(source, asyncpg.Pool):
        async with source.acquire() as connection:
            yield connection
            if stateless:
                mark_stateless(connection)
    else:
        yield source


class StatelessReleaseConnection(asyncpg.Connection):
    """A connection that can be told its last user left no session state, so that its release by the pool need
    not send asyncpg's reset query (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``).

    That query costs a round trip on every release: a single pooled enqueue made two where its one statement
    needs one. The mark holds for one release only, and is set only after the marking code's statements
    succeeded; any other use of the pool, or an error, gets the full reset. An open transaction is rolled back
    either way: asyncpg's pool does that (and forgets ``add_listener`` callbacks) before it calls the pool's
    ``reset`` function, whatever that does.
    """

    __slots__ = ("_left_no_session_state",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._left_no_session_state = False

    def left_no_session_state(self) -> None:
        """Skip the reset query at the next release (called through the pool's proxy, which forwards it)."""
        self._left_no_session_state = True

    def take_stateless_mark(self) -> bool:
        """Whether the last user marked this connection, clearing the mark: it covers one release only."""
        marked, self._left_no_session_state = self._left_no_session_state, False
        return marked


def mark_stateless(connection: Executor) -> None:
    """Tell ``connection`` (when it is a :class:`StatelessReleaseConnection`) that it needs no reset query."""
    mark = getattr(connection, "left_no_session_state", None)
    if mark is not None:
        mark()


async def reset_unless_stateless(connection: asyncpg.Connection[Any]) -> None:
    """A pool's ``reset``: asyncpg's reset query, unless the connection's last user said it needs none."""
    if isinstance(connection, StatelessReleaseConnection) and connection.take_stateless_mark():
        return
    query = connection.get_reset_query()
    if query:
        await connection.execute(query)


class LazyPool:
    """The pool behind an API object: the caller's (used as is, never closed), or one opened from a DSN on first
    use and closed by :meth:`close` (after which the next use opens a new one)."""

    def __init__(
        self,
        database: str | asyncpg.Pool[Any],
        *,
        max_size: int,
        prepared_statements: bool = True,
        server_settings: dict[str, str] | None = None,
    ) -> None:
        """``server_settings``: PostgreSQL settings for the connections of a pool opened here (not the caller's)."""
        self._server_settings = server_settings
        self._dsn = database if isinstance(database, str) else None
        if self._dsn is not None:
            remember_dsn(self._dsn)
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
                self._pool = await create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self._max_size,
                    statement_cache_size=self._statement_cache_size,
                    connection_class=StatelessReleaseConnection,
                    reset=reset_unless_stateless,
                    **({"server_settings": self._server_settings} if self._server_settings else {}),
                )
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
            raise DatabaseError(f"{what} failed: {scrub(str(error))} ({missing_hint})") from error
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseError(f"{what} failed: {scrub(str(error))}") from error


# What a forked child inherited from its parent and must neither use nor close. Closing an asyncpg connection
# politely sends Terminate on the parent's session; even garbage collection would abort it, which unregisters
# its socket from the epoll instance the child shares with the parent's loop. So the child keeps a reference
# for good: a few idle file descriptors, never read or written.
_ABANDONED_AFTER_FORK: list[object] = []


def abandon_after_fork(*objects: object) -> None:
    """Keep ``objects`` (a parent's pool, loop, thread) alive and untouched for the rest of this process."""
    _ABANDONED_AFTER_FORK.extend(item for item in objects if item is not None)


def database_url_from_env(value: str | None = None, *, option: str = "--database-url") -> str:
    """The DSN given (by ``option``), else ``DATABASE_URL``; a clear error naming where it came from when
    neither is set or it cannot be parsed. Its password is remembered, so that no message shows it."""
    dsn = value or os.environ.get("DATABASE_URL")
    if not dsn:
        raise ConfigurationError("DATABASE_URL is not set and no database URL was given")
    remember_dsn(dsn)
    check_dsn(dsn, option if value else "DATABASE_URL")
    return dsn


@contextmanager
def _connect_errors(dsn: str) -> Iterator[None]:
    """asyncpg's connection errors as ours, with no password in their text.

    asyncpg raises ValueError (some as ClientConfigurationError) for a DSN it cannot parse, and its message
    quotes the piece it choked on, which may be part of the password: that error is not chained."""
    remember_dsn(dsn)
    try:
        yield
    except ValueError as error:
        raise ConfigurationError(f"the database URL cannot be used: {scrub(str(error))}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise DatabaseError(f"cannot connect to {redact_dsn(dsn)}: {scrub(str(error))}") from error


async def connect(dsn: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """``asyncpg.connect`` with errors as :class:`ConfigurationError` (an unusable DSN) or
    :class:`DatabaseError` (an unreachable database), neither showing the password."""
    with _connect_errors(dsn):
        connection: asyncpg.Connection[Any] = await asyncpg.connect(dsn, **kwargs)
    return connection


async def create_pool(dsn: str, **kwargs: Any) -> asyncpg.Pool[Any]:
    """``asyncpg.create_pool`` with the errors of :func:`connect`."""
    with _connect_errors(dsn):
        return await asyncpg.create_pool(dsn, **kwargs)
