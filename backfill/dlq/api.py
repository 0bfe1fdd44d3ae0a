"""The dead-letter queue from Python: look at dead jobs, requeue them, delete them, annotate them.

:class:`DeadLetterQueue` wraps a pool (its own, made from a DSN, or the caller's, which it never closes)::

    async with DeadLetterQueue(os.environ["DATABASE_URL"]) as dlq:
        page = await dlq.list(DeadLetterFilter(task="send_email", error="timeout"), limit=20)
        for entry in page.entries:
            print(entry.id, entry.attempts, entry.last_error)
        await dlq.requeue([entry.id for entry in page.entries], note="SMTP fixed, see INC-42")

Acting on many entries at once takes care: ``requeue`` and ``delete`` with a filter refuse an empty one (which
matches every entry) unless ``all=True`` is passed, except in a dry run, which changes nothing. ``requeue`` and
``delete`` act in one transaction; for thousands of entries, ``requeue_batches`` and ``delete_batches`` do the
same as many short transactions, yielding each batch's result (see :mod:`backfill.dlq.batches`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import Any

import asyncpg

from backfill.core import ConfigurationError, DatabaseError, SchemaName
from backfill.core.extension import BIGINT_MAX, SMALLINT_MAX, SMALLINT_MIN, Executor, LazyPool, check_aware, check_int
from backfill.dlq import batches, queries
from backfill.dlq.migrations import migrate_dlq
from backfill.dlq.models import (
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterStats,
    DeleteResult,
    RequeueResult,
)
from backfill.dlq.mover import DeadLetterMover
from backfill.dlq.requeue import Overrides, requeue_entries

MAX_LIMIT = 10_000
MAX_NOTE_CHARS = 10_000
_OWN_POOL_SIZE = 2  # one call at a time per caller; a second for concurrent use

_NOT_INSTALLED_HINT = (
    "is the dead-letter table installed in schema {schema}? a backfill runner installs it, or call "
    "DeadLetterQueue.migrate(), or apply sql/dlq_schema.sql with psql"
)


class DeadLetterQueue:
    """The dead-letter queue of one schema. Use as ``async with``, or call :meth:`close` when done."""

    def __init__(self, database: str | asyncpg.Pool[Any], *, schema: str | SchemaName | None = None) -> None:
        if not isinstance(database, (str, asyncpg.Pool)) or database == "":
            raise ConfigurationError("DeadLetterQueue needs a database URL or an asyncpg.Pool")
        self.schema = SchemaName.coerce(schema)
        self._pool = LazyPool(database, max_size=_OWN_POOL_SIZE)

    async def __aenter__(self) -> DeadLetterQueue:
        await self._get_pool()  # fail here, at the `async with`, if the database is unreachable
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the pool this object opened; a pool the caller passed in stays open."""
        await self._pool.close()

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        return await self._pool.get()

    def _connection(self, what: str) -> AbstractAsyncContextManager[Executor]:
        """A pooled connection; database errors raised inside come out as DatabaseError saying ``what`` failed."""
        return self._pool.connection(f"dead-letter {what}", missing_hint=_NOT_INSTALLED_HINT.format(schema=self.schema))

    # -- schema -------------------------------------------------------------------------------------------

    async def migrate(self) -> list[int]:
        """Install the dead-letter table (Graphile's schema must exist); the migration ids applied now."""
        return await migrate_dlq(await self._get_pool(), self.schema)

    # -- reading ------------------------------------------------------------------------------------------

    async def get(self, entry_id: int) -> DeadLetterEntry | None:
        """One entry, every error included, or ``None``."""
        _check_id("entry_id", entry_id)
        async with self._connection("get") as connection:
            return await queries.get_entry(connection, self.schema, entry_id)

    async def list(
        self, filter: DeadLetterFilter | None = None, *, limit: int = 100, after: str | None = None
    ) -> DeadLetterPage:
        """Entries matching ``filter``, newest failure first; ``after`` is the previous page's ``next_cursor``.

        Pages are stable: walking them neither repeats nor skips an entry while others are added.
        """
        where = _filter(filter)
        _check_int("limit", limit, 1, MAX_LIMIT)
        if after is not None and not isinstance(after, str):
            raise ConfigurationError(f"after must be a cursor string from list(), got {after!r}")
        async with self._connection("list") as connection:
            return await queries.list_entries(connection, self.schema, where, limit=limit, after=after)

    async def stats(self) -> DeadLetterStats:
        """Counts by task, reason and error, totals, and the oldest and newest failure; from one snapshot."""
        async with (
            self._connection("stats") as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await queries.entry_stats(connection, self.schema)

    # -- acting -------------------------------------------------------------------------------------------

    async def requeue(
        self,
        ids: Iterable[int] | None = None,
        *,
        filter: DeadLetterFilter | None = None,
        all: bool = False,
        dry_run: bool = False,
        priority: int | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        note: str | None = None,
    ) -> RequeueResult:
        """Make jobs of the entries ``ids`` (or of the dead entries ``filter`` matches) again, in one transaction.

        Each new job gets the entry's task, payload, queue, priority, key and flags, fresh attempts, and any
        override given; the entry becomes ``requeued`` and ``note`` is appended to its notes. Entries already
        requeued, and keyed entries whose key another job holds, are reported in ``skipped``. With
        ``dry_run`` everything is done and rolled back: the result says what would happen, and no job ids.
        See :mod:`backfill.dlq.requeue`.
        """
        entry_ids, where = _targets(ids, filter, everything=all, dry_run=dry_run, action="requeue")
        overrides = _overrides(priority, run_at, max_attempts, note)
        async with self._connection("requeue") as connection:
            return await requeue_entries(
                connection, self.schema, ids=entry_ids, where=where, overrides=overrides, dry_run=dry_run
            )

    async def requeue_batches(
        self,
        ids: Iterable[int] | None = None,
        *,
        filter: DeadLetterFilter | None = None,
        all: bool = False,
        dry_run: bool = False,
        priority: int | None = None,
        run_at: datetime | None = None,
        max_attempts: int | None = None,
        note: str | None = None,
        batch_size: int = batches.DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[RequeueResult]:
        """As :meth:`requeue`, one transaction per batch of at most ``batch_size`` entries (by ascending id),
        yielding each batch's result once it is committed (rolled back with ``dry_run``).

        An error stops the walk with the batches before it done; calling again with the same arguments
        continues, since requeued entries are no longer ``dead``.
        """
        entry_ids, where = _targets(ids, filter, everything=all, dry_run=dry_run, action="requeue")
        overrides = _overrides(priority, run_at, max_attempts, note)
        _check_int("batch_size", batch_size, 1, MAX_LIMIT)
        async with self._connection("requeue") as connection:
            async for result in batches.requeue_batches(
                connection,
                self.schema,
                ids=entry_ids,
                where=where,
                overrides=overrides,
                dry_run=dry_run,
                batch_size=batch_size,
            ):
                yield result

    async def delete_batches(
        self,
        ids: Iterable[int] | None = None,
        *,
        filter: DeadLetterFilter | None = None,
        all: bool = False,
        dry_run: bool = False,
        batch_size: int = batches.DEFAULT_BATCH_SIZE,
    ) -> AsyncIterator[DeleteResult]:
        """As :meth:`delete`, one transaction per batch of at most ``batch_size`` entries, yielding each."""
        entry_ids, where = _targets(ids, filter, everything=all, dry_run=dry_run, action="delete")
        _check_int("batch_size", batch_size, 1, MAX_LIMIT)
        async with self._connection("delete") as connection:
            async for result in batches.delete_batches(
                connection, self.schema, ids=entry_ids, where=where, dry_run=dry_run, batch_size=batch_size
            ):
                yield result

    async def count(self, filter: DeadLetterFilter | None = None, *, dead_only: bool = False) -> int:
        """How many entries ``filter`` matches; ``dead_only`` counts only those a requeue would take."""
        where = _filter(filter)
        async with self._connection("count") as connection:
            return await batches.count_entries(connection, self.schema, where, dead_only=dead_only)

    async def delete(
        self,
        ids: Iterable[int] | None = None,
        *,
        filter: DeadLetterFilter | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> DeleteResult:
        """Delete the entries ``ids`` (or those ``filter`` matches, in any state); ``dry_run`` rolls back.

        Deleting a ``requeued`` entry does not touch its live job; if that job dies, it gets a new entry.
        """
        entry_ids, where = _targets(ids, filter, everything=all, dry_run=dry_run, action="delete")
        async with self._connection("delete") as connection:
            transaction = connection.transaction()
            await transaction.start()
            try:
                deleted = await queries.delete_entries(connection, self.schema, ids=entry_ids, where=where)
            except BaseException:
                await transaction.rollback()
                raise
            await (transaction.rollback() if dry_run else transaction.commit())
        missing = () if entry_ids is None else tuple(sorted(set(entry_ids) - set(deleted)))
        return DeleteResult(deleted=tuple(deleted), missing=missing, dry_run=dry_run)

    async def annotate(self, entry_id: int, note: str) -> DeadLetterEntry | None:
        """Append ``note`` (stamped with the time, in UTC) to the entry's notes; the entry, or ``None``."""
        _check_id("entry_id", entry_id)
        text = _note(note)
        if text is None:
            raise ConfigurationError("note must be a non-empty string")
        async with self._connection("annotate") as connection:
            return await queries.annotate_entry(connection, self.schema, entry_id, text)

    async def move_now(self) -> int:
        """Move every permanently failed job into the queue now (as the runner's mover does every few seconds),
        and forget finished requeues; the number of jobs moved."""
        pool = await self._get_pool()
        try:
            return await DeadLetterMover(pool, self.schema).move_now()
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError) as error:
            hint = _NOT_INSTALLED_HINT.format(schema=self.schema)
            raise DatabaseError(f"dead-letter move failed: {error} ({hint})") from error
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseError(f"dead-letter move failed: {error}") from error


def _filter(value: DeadLetterFilter | None) -> DeadLetterFilter:
    if value is None:
        return DeadLetterFilter()
    if not isinstance(value, DeadLetterFilter):
        raise ConfigurationError(f"filter must be a DeadLetterFilter, not {type(value).__name__}")
    return value


def _targets(
    ids: Iterable[int] | None, where: DeadLetterFilter | None, *, everything: bool, dry_run: bool, action: str
) -> tuple[Sequence[int] | None, DeadLetterFilter | None]:
    """Entry ids, or a filter: exactly one way of choosing, and an explicit ``all`` for an empty filter."""
    if ids is not None:
        if where is not None or everything:
            raise ConfigurationError(f"{action}: give entry ids or a filter (or all=True), not both")
        if isinstance(ids, (str, bytes, int)):
            raise ConfigurationError(f"{action}: ids must be a list of entry ids")
        chosen = list(ids)
        for position, entry_id in enumerate(chosen):
            _check_id(f"ids[{position}]", entry_id)
        return chosen, None
    checked = _filter(where)
    if checked.is_empty and not everything and not dry_run:
        raise ConfigurationError(
            f"{action}: no ids and an empty filter would {action} every entry; pass all=True if that is meant"
        )
    return None, checked


def _overrides(priority: Any, run_at: Any, max_attempts: Any, note: Any) -> Overrides:
    if priority is not None:
        _check_int("priority", priority, SMALLINT_MIN, SMALLINT_MAX)
    if max_attempts is not None:
        _check_int("max_attempts", max_attempts, 1, SMALLINT_MAX)
    check_aware("run_at", run_at, must="a timezone-aware datetime", optional=True)
    return Overrides(priority=priority, run_at=run_at, max_attempts=max_attempts, note=_note(note))


def _check_id(name: str, value: Any) -> None:
    check_int(name, value, 1, BIGINT_MAX, must="a positive integer entry id")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    check_int(name, value, low, high, must=f"an integer between {low} and {high}")


def _note(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError("note must be a non-empty string")
    if len(value) > MAX_NOTE_CHARS:
        raise ConfigurationError(f"note must be at most {MAX_NOTE_CHARS} characters, got {len(value)}")
    return value
