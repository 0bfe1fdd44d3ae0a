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

from backfill.core.admin.models import JobState
from backfill.core.db import Executor
from backfill.core.jobs import JobSql
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements


class SelectionSql(Statements, file=("backfill.core.sql", "selection.sql")):
    """Counting and paging the jobs a filter matches (see selection.sql)."""

    includes = (JobSql,)
    count_jobs: str
    job_id_page: str
    selected_jobs: str


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


async def count_jobs(connection: Executor, schema: SchemaName, which: JobFilter, *, actable_only: bool) -> int:
    """How many jobs match; ``actable_only``: only those not locked (as Graphile's functions see locks)."""
    return int(await connection.fetchval(SelectionSql.for_schema(schema).count_jobs, *which.arguments(), actable_only))


async def job_id_page(
    connection: Executor, schema: SchemaName, which: JobFilter, *, after: int, limit: int
) -> list[int]:
    """The ids of the next ``limit`` matching jobs above ``after``, ascending (locked ones included)."""
    rows = await connection.fetch(SelectionSql.for_schema(schema).job_id_page, *which.arguments(), False, after, limit)
    return [row["id"] for row in rows]
