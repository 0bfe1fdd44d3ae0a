"""Requeue: dead-letter entries become jobs again, through Graphile's own ``add_jobs``/``add_job``.

All of one call happens in one transaction (the caller's :func:`requeue_entries` opens it): the entries are
locked, the jobs added, and the entries marked ``requeued`` with the new job's id, so a job never exists
without its entry saying so, and two people requeueing the same entry at once get one job, not two (the
second finds it ``requeued`` once the first commits). A dry run does exactly the same and rolls back, so
what it reports is what a real run would have done at that moment.

What the new job gets: the entry's task, payload (byte for byte), queue, priority and key, its flags minus
``backfill:suspect`` (the last death was not a crash) plus ``backfill:dlq=<entry id>`` (which sends it back to
this entry if it dies again), fresh attempts, and ``run_at``/``priority``/``max_attempts`` overrides if given.

Job keys. An entry with a job key may meet a newer job holding the same key (the application enqueued the
same work again since). Graphile's default ``replace`` mode would overwrite that newer job with the dead
payload, so a keyed entry is added with ``unsafe_dedupe``, inside a savepoint: if the key is taken, the
savepoint is rolled back (the other job is left exactly as it was) and the entry is reported as skipped,
naming the job that holds the key. Entries without a key cannot collide and go in one ``add_jobs`` call.

Entries already ``requeued`` are refused (their job is live: act on that job instead); an entry comes back
to ``dead`` when its job dies again, or is deleted when it succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import asyncpg

from backfill.core import SchemaName
from backfill.core.extension import SUSPECT_FLAG, Executor, Statements, decode_json, parse_flags
from backfill.dlq.models import (
    DLQ_FLAG_PREFIX,
    DeadLetterFilter,
    EntryState,
    Requeued,
    RequeueResult,
    Skipped,
    entry_id_of,
)
from backfill.dlq.queries import EntrySql, filter_arguments


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the caller changes on the new jobs (``None``: the entry's own, or now for ``run_at``)."""

    priority: int | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    note: str | None = None


class RequeueSql(Statements, file=("backfill.dlq.sql", "requeue.sql")):
    """The statements of a requeue: lock the entries, add their jobs, mark them requeued."""

    includes = (EntrySql,)
    literals = MappingProxyType({"suspect_flag": SUSPECT_FLAG, "dlq_flag_prefix": DLQ_FLAG_PREFIX})
    locked_entry_columns: str
    requeued_flags: str
    added_job_columns: str
    lock_ids: str
    lock_filtered: str
    add_keyless: str
    add_keyed: str
    mark: str


class _KeyTaken(Exception):
    """Rolls back a keyed entry's savepoint: another job holds its key."""


async def requeue_entries(
    connection: Executor,
    schema: SchemaName,
    *,
    ids: Sequence[int] | None,
    where: DeadLetterFilter | None,
    overrides: Overrides,
    dry_run: bool,
) -> RequeueResult:
    """Requeue the entries ``ids`` (or those ``where`` matches) in one transaction; see the module docstring."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        requeued, skipped = await _requeue(connection, schema, ids=ids, where=where, overrides=overrides)
    except BaseException:
        await transaction.rollback()
        raise
    if dry_run:
        await transaction.rollback()
        requeued = [
            Requeued(r.entry_id, None, r.task_identifier, r.queue_name, r.priority, r.max_attempts, r.run_at, r.job_key)
            for r in requeued
        ]
    else:
        await transaction.commit()
    return RequeueResult(requeued=tuple(requeued), skipped=tuple(skipped), dry_run=dry_run)


async def _requeue(
    connection: Executor,
    schema: SchemaName,
    *,
    ids: Sequence[int] | None,
    where: DeadLetterFilter | None,
    overrides: Overrides,
) -> tuple[list[Requeued], list[Skipped]]:
    statements = RequeueSql.for_schema(schema)
    skipped: list[Skipped] = []
    if ids is not None:
        rows = await connection.fetch(statements.lock_ids, list(ids))
        found = {row["id"] for row in rows}
        skipped.extend(Skipped(entry_id, "no such entry") for entry_id in sorted(set(ids) - found))
    else:
        rows = await connection.fetch(statements.lock_filtered, *filter_arguments(where or DeadLetterFilter()))
    entries: dict[int, asyncpg.Record] = {}
    for row in rows:
        if row["state"] == EntryState.REQUEUED.value:
            skipped.append(Skipped(row["id"], f"already requeued as job {row['requeued_job_id']}"))
        else:
            entries[row["id"]] = row

    arguments = (overrides.run_at, overrides.max_attempts, overrides.priority)
    added: dict[int, asyncpg.Record] = {}
    keyless = [entry_id for entry_id, row in entries.items() if row["job_key"] is None]
    if keyless:
        for job in await connection.fetch(statements.add_keyless, keyless, *arguments):
            entry_id = _entry_of(job)
            if entry_id is not None:
                added[entry_id] = job
    for entry_id, row in entries.items():
        if row["job_key"] is None:
            continue
        try:
            async with connection.transaction():  # a savepoint: undone if the key is taken
                job = await connection.fetchrow(statements.add_keyed, entry_id, *arguments)
                if job is None or _entry_of(job) != entry_id:
                    raise _KeyTaken(None if job is None else job["id"])
        except _KeyTaken as taken:
            holder = taken.args[0]
            skipped.append(Skipped(entry_id, f"job key {row['job_key']!r} is held by job {holder}"))
            continue
        added[entry_id] = job

    for entry_id in keyless:
        if entry_id not in added:  # add_jobs dropped it (cannot happen for a keyless spec): say so, never guess
            skipped.append(Skipped(entry_id, "add_jobs returned no job for it"))
    if added:
        order = sorted(added)
        await connection.execute(statements.mark, order, [added[entry_id]["id"] for entry_id in order], overrides.note)
    requeued = [
        Requeued(
            entry_id=entry_id,
            job_id=added[entry_id]["id"],
            task_identifier=entries[entry_id]["task_identifier"],
            queue_name=entries[entry_id]["queue_name"],
            priority=added[entry_id]["priority"],
            max_attempts=added[entry_id]["max_attempts"],
            run_at=added[entry_id]["run_at"],
            job_key=added[entry_id]["key"],
        )
        for entry_id in sorted(added)
    ]
    return requeued, sorted(skipped, key=lambda s: s.entry_id)


def _entry_of(job: Any) -> int | None:
    flags = decode_json(job["flags"])
    if not isinstance(flags, dict):
        return None
    return entry_id_of(parse_flags(flags))
