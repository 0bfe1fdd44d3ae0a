"""Requeue and delete many dead-letter entries as many short transactions instead of one long one.

One transaction over 100,000 entries would hold 100,000 row locks and an open snapshot for minutes (holding
back vacuum of the busy jobs table), and lose everything to one error near the end. Here each batch of at most
``batch_size`` entries is its own transaction, committed before the next starts; the caller sees each batch's
result as it lands (for progress), and a failure midway leaves the earlier batches done.

Re-running after a failure continues where it stopped, by construction: a requeue by filter only ever takes
``dead`` entries, and the entries already requeued are ``requeued``; a delete finds nothing it deleted.

Batches are walked by ascending id (keyset pagination): the next batch starts after the last id the previous
one looked at, so an entry left as it was (a keyed entry whose key another job holds, a dry run) is not met
again, and the walk ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from backfill.core import SchemaName
from backfill.core.extension import Executor, Statements
from backfill.dlq.models import DeadLetterFilter, DeleteResult, RequeueResult
from backfill.dlq.queries import EntrySql, filter_arguments
from backfill.dlq.requeue import Overrides, requeue_entries

DEFAULT_BATCH_SIZE = 1000  # 1,000 entries: well under a second per batch here, 100 batches for 100,000


class BatchSql(Statements, file=("backfill.dlq.sql", "batches.sql")):
    """The count and the walk of a batched requeue or delete (deleting by id is :class:`EntrySql`'s)."""

    includes = (EntrySql,)
    batch_page: str
    count: str
    page: str
    delete_page: str


async def count_entries(connection: Executor, schema: SchemaName, where: DeadLetterFilter, *, dead_only: bool) -> int:
    """How many entries ``where`` matches (only ``dead`` ones with ``dead_only``, as a requeue takes)."""
    return int(await connection.fetchval(BatchSql.for_schema(schema).count, *filter_arguments(where), dead_only))


def chunks(ids: Sequence[int], size: int) -> list[list[int]]:
    """Distinct ids in ascending order, cut into lists of at most ``size``."""
    ordered = sorted(set(ids))
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]


async def requeue_batches(
    connection: Executor,
    schema: SchemaName,
    *,
    ids: Sequence[int] | None,
    where: DeadLetterFilter | None,
    overrides: Overrides,
    dry_run: bool,
    batch_size: int,
) -> AsyncIterator[RequeueResult]:
    """Requeue as :func:`requeue_entries` does, one transaction per batch; yields each batch's result."""
    if ids is not None:
        for chunk in chunks(ids, batch_size):
            yield await requeue_entries(connection, schema, ids=chunk, where=None, overrides=overrides, dry_run=dry_run)
        return
    arguments = filter_arguments(where or DeadLetterFilter())
    after = 0
    while True:
        rows = await connection.fetch(BatchSql.for_schema(schema).page, *arguments, True, after, batch_size)
        page = [row["id"] for row in rows]
        if not page:
            return
        # Locked and re-read by id: an entry requeued or deleted by someone else meanwhile is reported skipped.
        yield await requeue_entries(connection, schema, ids=page, where=None, overrides=overrides, dry_run=dry_run)
        if len(page) < batch_size:
            return
        after = page[-1]


async def delete_batches(
    connection: Executor,
    schema: SchemaName,
    *,
    ids: Sequence[int] | None,
    where: DeadLetterFilter | None,
    dry_run: bool,
    batch_size: int,
) -> AsyncIterator[DeleteResult]:
    """Delete the entries ``ids`` (or those ``where`` matches, any state), one transaction per batch."""
    if ids is not None:
        for chunk in chunks(ids, batch_size):
            deleted = await _in_transaction(connection, dry_run, EntrySql.for_schema(schema).delete_ids, chunk)
            missing = tuple(sorted(set(chunk) - set(deleted)))
            yield DeleteResult(deleted=tuple(deleted), missing=missing, dry_run=dry_run)
        return
    arguments = filter_arguments(where or DeadLetterFilter())
    after = 0
    while True:
        deleted = await _in_transaction(
            connection, dry_run, BatchSql.for_schema(schema).delete_page, *arguments, False, after, batch_size
        )
        if not deleted:
            return
        yield DeleteResult(deleted=tuple(deleted), missing=(), dry_run=dry_run)
        if len(deleted) < batch_size:
            return
        after = deleted[-1]


async def _in_transaction(connection: Executor, dry_run: bool, statement: str, *arguments: object) -> list[int]:
    """The ids a deleting statement returns, committed, or rolled back for a dry run."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        rows = await connection.fetch(statement, *arguments)
    except BaseException:
        await transaction.rollback()
        raise
    await (transaction.rollback() if dry_run else transaction.commit())
    return sorted(row["id"] for row in rows)
