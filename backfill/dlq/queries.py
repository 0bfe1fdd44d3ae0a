"""The statements of the dead-letter API: list, get, delete, annotate and stats (requeue has its own module).

Each function takes a connection and a :class:`SchemaName` and returns values from :mod:`backfill.dlq.models`;
errors are left to the caller (:class:`backfill.dlq.api.DeadLetterQueue` wraps them). The statements are in
``sql/entries.sql``, loaded once per schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from backfill.core import ConfigurationError, SchemaName
from backfill.core.extension import Executor, Statements
from backfill.dlq.models import (
    CountBy,
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterStats,
    EntryState,
)

# How stats names entries whose last attempt recorded no exception type (a Node worker's, or a job failed by hand).
UNKNOWN_TYPE = "(unknown)"


class EntrySql(Statements, file=("backfill.dlq.sql", "entries.sql")):
    """The statements over dead-letter entries (``entry_filter`` and ``note_stamp`` are shared with the batch
    and requeue statements)."""

    literals = MappingProxyType({"unknown_type": UNKNOWN_TYPE})
    entry_columns: str
    entry_filter: str
    note_stamp: str
    get: str
    list: str
    delete_ids: str
    delete_filtered: str
    annotate: str
    totals: str
    by_task: str
    by_reason: str
    by_exception_type: str
    top_errors: str


def filter_arguments(where: DeadLetterFilter) -> tuple[Any, ...]:
    """The seven parameters of the ``entry_filter`` part (``$1..$7``, see entries.sql) for ``where``."""
    state = None if where.state is None else EntryState(where.state).value
    return (where.task, where.queue, where.since, where.until, where.error, state, where.exception_type)


def encode_cursor(failed_at: datetime, entry_id: int) -> str:
    """The position after an entry, as :meth:`DeadLetterQueue.list` hands it out: ``<failed_at ISO>,<id>``."""
    return f"{failed_at.isoformat()},{entry_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        when, _, entry_id = cursor.rpartition(",")
        failed_at = datetime.fromisoformat(when)
        position = (failed_at, int(entry_id))
    except (AttributeError, ValueError):
        raise ConfigurationError(f"after: {cursor!r} is not a cursor handed out by list()") from None
    if failed_at.tzinfo is None:
        raise ConfigurationError(f"after: {cursor!r} is not a cursor handed out by list()")
    return position


async def get_entry(connection: Executor, schema: SchemaName, entry_id: int) -> DeadLetterEntry | None:
    row = await connection.fetchrow(EntrySql.for_schema(schema).get, entry_id)
    return None if row is None else DeadLetterEntry.from_record(row)


async def list_entries(
    connection: Executor, schema: SchemaName, where: DeadLetterFilter, *, limit: int, after: str | None
) -> DeadLetterPage:
    position: tuple[datetime | None, int | None] = (None, None) if after is None else decode_cursor(after)
    # One more than asked: whether a next page exists, without a count.
    rows = await connection.fetch(EntrySql.for_schema(schema).list, *filter_arguments(where), *position, limit + 1)
    entries = tuple(DeadLetterEntry.from_record(row) for row in rows[:limit])
    more = len(rows) > limit
    next_cursor = encode_cursor(entries[-1].failed_at, entries[-1].id) if more and entries else None
    return DeadLetterPage(entries=entries, next_cursor=next_cursor)


async def delete_entries(
    connection: Executor, schema: SchemaName, *, ids: Sequence[int] | None, where: DeadLetterFilter | None
) -> list[int]:
    statements = EntrySql.for_schema(schema)
    if ids is not None:
        rows = await connection.fetch(statements.delete_ids, list(ids))
    else:
        rows = await connection.fetch(statements.delete_filtered, *filter_arguments(where or DeadLetterFilter()))
    return sorted(row["id"] for row in rows)


async def annotate_entry(connection: Executor, schema: SchemaName, entry_id: int, note: str) -> DeadLetterEntry | None:
    row = await connection.fetchrow(EntrySql.for_schema(schema).annotate, entry_id, note)
    return None if row is None else DeadLetterEntry.from_record(row)


async def entry_stats(connection: Executor, schema: SchemaName) -> DeadLetterStats:
    statements = EntrySql.for_schema(schema)
    totals = await connection.fetchrow(statements.totals)
    assert totals is not None  # an aggregate without group by always returns its row

    async def counts(statement: str) -> tuple[CountBy, ...]:
        return tuple(CountBy(value=row["value"], count=row["count"]) for row in await connection.fetch(statement))

    return DeadLetterStats(
        total=totals["total"],
        dead=totals["dead"],
        requeued=totals["requeued"],
        oldest_failed_at=totals["oldest_failed_at"],
        newest_failed_at=totals["newest_failed_at"],
        by_task=await counts(statements.by_task),
        by_reason=await counts(statements.by_reason),
        top_errors=await counts(statements.top_errors),
        by_exception_type=await counts(statements.by_exception_type),
    )
