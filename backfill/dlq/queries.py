"""The statements of the dead-letter API: list, get, delete, annotate and stats (requeue has its own module).

Each function takes a connection and a :class:`SchemaName` and returns values from :mod:`backfill.dlq.models`;
errors are left to the caller (:class:`backfill.dlq.api.DeadLetterQueue` wraps them). Statements are built
once per schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from backfill.core.db import Executor
from backfill.core.errors import ConfigurationError
from backfill.core.schema import SchemaName
from backfill.dlq.migrations import DLQ_TABLE
from backfill.dlq.models import (
    CountBy,
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterStats,
    EntryState,
)

# Payload and flags as text, so callers' pools need no JSON codec (as in the core's queries).
ENTRY_COLUMNS = """
    d.id, d.job_id, d.task_identifier, d.payload::text as payload, d.queue_name, d.priority, d.job_key,
    d.flags::text as flags, d.attempts, d.max_attempts, d.errors::text as errors, d.last_error, d.reason,
    d.created_at, d.run_at, d.failed_at, d.requeue_count, d.requeued_at, d.requeued_job_id, d.state, d.notes,
    d.updated_at, d.exception_type, d.traceback
"""

# A filter as SQL over an entry aliased ``d``, parameters $1..$6 (see filter_arguments); each part is skipped
# when its parameter is null. The error text is matched with strpos, not LIKE, so '%' and '_' in what a
# person pasted are plain characters.
FILTER_SQL = """
    ($1::text is null or d.task_identifier = $1::text)
    and ($2::text is null or d.queue_name = $2::text)
    and ($3::timestamptz is null or d.failed_at >= $3::timestamptz)
    and ($4::timestamptz is null or d.failed_at < $4::timestamptz)
    and ($5::text is null
         or strpos(lower(coalesce(d.last_error, '')), lower($5::text)) > 0
         or exists (
           select 1 from jsonb_array_elements(d.errors) as e
            where strpos(lower(coalesce(e->>'error', '')), lower($5::text)) > 0
         ))
    and ($6::text is null or d.state = $6::text)
"""

# A note is appended on a line of its own, stamped in UTC, so the notes read as a log of what was done.
APPEND_NOTE_SQL = """
    concat_ws(
      E'\\n', {current}, to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"') || ' ' || {note}
    )
"""

_TOP_ERRORS = 10
# How stats names entries whose last attempt recorded no exception type (a Node worker's, or a job failed by hand).
UNKNOWN_TYPE = "(unknown)"
_ERROR_LINE_CHARS = 200


def filter_arguments(where: DeadLetterFilter) -> tuple[Any, ...]:
    """The six parameters of :data:`FILTER_SQL` for ``where``."""
    state = None if where.state is None else EntryState(where.state).value
    return (where.task, where.queue, where.since, where.until, where.error, state)


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


@cache
def _statements(schema: SchemaName) -> dict[str, str]:
    dlq = f"{schema.qualify(DLQ_TABLE)} as d"
    return {
        "get": f"select {ENTRY_COLUMNS} from {dlq} where d.id = $1::bigint",
        # Newest failure first; resumed strictly after the cursor's (failed_at, id), so pages neither repeat
        # nor skip an entry whatever is moved in between (new failures land before the first page). An entry
        # that dies again after a requeue gets a new failed_at, and moves to the front.
        "list": f"""
            select {ENTRY_COLUMNS} from {dlq}
             where {FILTER_SQL}
               and ($7::timestamptz is null or (d.failed_at, d.id) < ($7::timestamptz, $8::bigint))
             order by d.failed_at desc, d.id desc
             limit $9::int
        """,
        "delete_ids": f"delete from {dlq} where d.id = any($1::bigint[]) returning d.id",
        "delete_filtered": f"delete from {dlq} where {FILTER_SQL} returning d.id",
        "annotate": f"""
            update {dlq}
               set notes = {APPEND_NOTE_SQL.format(current="d.notes", note="$2::text")}, updated_at = now()
             where d.id = $1::bigint
            returning {ENTRY_COLUMNS}
        """,
        "totals": f"""
            select count(*)::int as total,
                   count(*) filter (where d.state = 'dead')::int as dead,
                   count(*) filter (where d.state = 'requeued')::int as requeued,
                   min(d.failed_at) as oldest_failed_at,
                   max(d.failed_at) as newest_failed_at
              from {dlq}
        """,
        "by_task": f"""
            select d.task_identifier as value, count(*)::int as count from {dlq}
             group by d.task_identifier order by count(*) desc, d.task_identifier
        """,
        "by_reason": f"""
            select d.reason as value, count(*)::int as count from {dlq}
             group by d.reason order by count(*) desc, d.reason
        """,
        "by_exception_type": f"""
            select coalesce(d.exception_type, '{UNKNOWN_TYPE}') as value, count(*)::int as count from {dlq}
             group by 1 order by count(*) desc, 1
        """,
        "top_errors": f"""
            select first_line as value, count(*)::int as count
              from {dlq}
             cross join lateral (
               select left(split_part(coalesce(d.last_error, ''), E'\\n', 1), {_ERROR_LINE_CHARS}) as first_line
             ) as e
             group by first_line order by count(*) desc, first_line
             limit {_TOP_ERRORS}
        """,
    }


async def get_entry(connection: Executor, schema: SchemaName, entry_id: int) -> DeadLetterEntry | None:
    row = await connection.fetchrow(_statements(schema)["get"], entry_id)
    return None if row is None else DeadLetterEntry.from_record(row)


async def list_entries(
    connection: Executor, schema: SchemaName, where: DeadLetterFilter, *, limit: int, after: str | None
) -> DeadLetterPage:
    position: tuple[datetime | None, int | None] = (None, None) if after is None else decode_cursor(after)
    # One more than asked: whether a next page exists, without a count.
    rows = await connection.fetch(_statements(schema)["list"], *filter_arguments(where), *position, limit + 1)
    entries = tuple(DeadLetterEntry.from_record(row) for row in rows[:limit])
    more = len(rows) > limit
    next_cursor = encode_cursor(entries[-1].failed_at, entries[-1].id) if more and entries else None
    return DeadLetterPage(entries=entries, next_cursor=next_cursor)


async def delete_entries(
    connection: Executor, schema: SchemaName, *, ids: Sequence[int] | None, where: DeadLetterFilter | None
) -> list[int]:
    statements = _statements(schema)
    if ids is not None:
        rows = await connection.fetch(statements["delete_ids"], list(ids))
    else:
        rows = await connection.fetch(statements["delete_filtered"], *filter_arguments(where or DeadLetterFilter()))
    return sorted(row["id"] for row in rows)


async def annotate_entry(connection: Executor, schema: SchemaName, entry_id: int, note: str) -> DeadLetterEntry | None:
    row = await connection.fetchrow(_statements(schema)["annotate"], entry_id, note)
    return None if row is None else DeadLetterEntry.from_record(row)


async def entry_stats(connection: Executor, schema: SchemaName) -> DeadLetterStats:
    statements = _statements(schema)
    totals = await connection.fetchrow(statements["totals"])
    assert totals is not None  # an aggregate without group by always returns its row

    async def counts(name: str) -> tuple[CountBy, ...]:
        return tuple(
            CountBy(value=row["value"], count=row["count"]) for row in await connection.fetch(statements[name])
        )

    return DeadLetterStats(
        total=totals["total"],
        dead=totals["dead"],
        requeued=totals["requeued"],
        oldest_failed_at=totals["oldest_failed_at"],
        newest_failed_at=totals["newest_failed_at"],
        by_task=await counts("by_task"),
        by_reason=await counts("by_reason"),
        top_errors=await counts("top_errors"),
        by_exception_type=await counts("by_exception_type"),
    )
