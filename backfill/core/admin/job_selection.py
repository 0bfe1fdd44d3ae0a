"""Choosing jobs to act on by filter, a page of ids at a time, and counting them (for bulk actions).

The acting functions (Graphile's ``complete_jobs`` and friends) take arrays of ids; a bulk action walks the
jobs a filter matches in pages of ids by ascending id (``id > after``), and hands each page to the function in
a statement of its own, so that 100,000 jobs are 100 short transactions rather than one long one. The
functions re-check each job's lock themselves, so a job locked between the page and the action is still left
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from backfill.core.admin.models import JobState
from backfill.core.admin.queries import STATE_SQL
from backfill.core.db import Executor
from backfill.core.schema import SchemaName

# Graphile's acting functions leave a job alone while its lock is younger than this (functions.sql).
_ACTABLE_SQL = "(j.locked_at is null or j.locked_at < now() - interval '4 hours')"


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs matching every field given (``None`` matches anything); ``ids`` limits them to those ids."""

    task: str | None = None
    queue: str | None = None
    state: JobState | None = None
    ids: Sequence[int] | None = None

    def arguments(self) -> tuple[object, ...]:
        ids = None if self.ids is None else list(self.ids)
        return (self.task, self.queue, None if self.state is None else self.state.value, ids)


@cache
def _statements(schema: SchemaName) -> dict[str, str]:
    # $1 task, $2 queue, $3 state, $4 ids, each skipped when null; $5 only jobs the functions would act on.
    where = f"""
        from {schema.qualify("_private_jobs")} as j
        join {schema.qualify("_private_tasks")} as t on t.id = j.task_id
        left join {schema.qualify("_private_job_queues")} as q on q.id = j.job_queue_id
       where ($1::text is null or t.identifier = $1::text)
         and ($2::text is null or q.queue_name = $2::text)
         and ($3::text is null or {STATE_SQL} = $3::text)
         and ($4::bigint[] is null or j.id = any($4::bigint[]))
         and (not $5::boolean or {_ACTABLE_SQL})
    """
    return {
        "count": f"select count(*) {where}",
        "page": f"select j.id {where} and j.id > $6::bigint order by j.id limit $7::int",
    }


async def count_jobs(connection: Executor, schema: SchemaName, which: JobFilter, *, actable_only: bool) -> int:
    """How many jobs match; ``actable_only``: only those not locked (as Graphile's functions see locks)."""
    return int(await connection.fetchval(_statements(schema)["count"], *which.arguments(), actable_only))


async def job_id_page(
    connection: Executor, schema: SchemaName, which: JobFilter, *, after: int, limit: int
) -> list[int]:
    """The ids of the next ``limit`` matching jobs above ``after``, ascending (locked ones included)."""
    rows = await connection.fetch(_statements(schema)["page"], *which.arguments(), False, after, limit)
    return [row["id"] for row in rows]
