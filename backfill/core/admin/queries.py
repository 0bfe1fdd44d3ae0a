"""The read side of the job utilities: jobs by filter, one job, queue, task and worker figures.

Each function takes a connection (or pool proxy) and a :class:`SchemaName` and returns values from
:mod:`backfill.core.admin.models`; errors are left to the caller (:class:`backfill.core.admin.utils.WorkerUtils`
wraps them). The statements are in core/sql/inspect.sql, loaded once per schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from backfill.core.admin.models import JobInfo, JobState, QueueStats, TaskStats, WorkerInfo
from backfill.core.catalog import column_exists, table_exists
from backfill.core.db import Executor
from backfill.core.jobs import JobSql
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements

ERRORS_TABLE = "backfill_job_errors"
WORKERS_TABLE = "backfill_workers"


class InspectSql(Statements, file=("backfill.core.sql", "inspect.sql")):
    """The job utilities' reads (see inspect.sql, which says why some come in variants)."""

    includes = (JobSql,)
    get_job: str
    get_job_without_history: str
    list_jobs: str
    list_jobs_without_history: str
    job_info_columns: str
    last_exception_type: str
    listed_jobs: str
    listing_page: str
    queue_stats: str
    task_stats: str
    workers: str
    workers_without_lanes: str
    workers_without_registry: str
    worker_listing: str


async def has_exception_types(connection: Executor, schema: SchemaName) -> bool:
    """Whether the error history records exception types (core migration 3 is applied)."""
    return await column_exists(connection, schema, ERRORS_TABLE, "exception_type")


async def get_job(connection: Executor, schema: SchemaName, job_id: int) -> JobInfo | None:
    sql = InspectSql.for_schema(schema)
    history = await has_exception_types(connection, schema)
    row = await connection.fetchrow(sql.get_job if history else sql.get_job_without_history, job_id)
    return None if row is None else JobInfo.from_record(row)


async def list_jobs(
    connection: Executor,
    schema: SchemaName,
    *,
    task: str | None,
    queue: str | None,
    state: JobState | None,
    locked_by: str | None,
    key: str | None,
    limit: int,
    after_id: int | None,
    exception_type: str | None = None,
    min_priority: int | None = None,
    max_priority: int | None = None,
    required_flags: Sequence[str] | None = None,
    forbidden_flags: Sequence[str] | None = None,
    error: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[JobInfo]:
    sql = InspectSql.for_schema(schema)
    history = await has_exception_types(connection, schema)
    rows = await connection.fetch(
        sql.list_jobs if history else sql.list_jobs_without_history,
        task,
        queue,
        None if state is None else state.value,
        locked_by,
        key,
        after_id,
        limit,
        exception_type,
        min_priority,
        max_priority,
        None if required_flags is None else list(required_flags),
        None if forbidden_flags is None else list(forbidden_flags),
        error,
        created_after,
        created_before,
    )
    return [JobInfo.from_record(row) for row in rows]


async def queue_stats(connection: Executor, schema: SchemaName) -> list[QueueStats]:
    return [QueueStats.from_record(row) for row in await connection.fetch(InspectSql.for_schema(schema).queue_stats)]


async def task_stats(connection: Executor, schema: SchemaName) -> list[TaskStats]:
    return [TaskStats.from_record(row) for row in await connection.fetch(InspectSql.for_schema(schema).task_stats)]


async def workers(connection: Executor, schema: SchemaName) -> list[WorkerInfo]:
    sql = InspectSql.for_schema(schema)
    if not await table_exists(connection, schema, WORKERS_TABLE):
        statement = sql.workers_without_registry
    elif await column_exists(connection, schema, WORKERS_TABLE, "lane"):
        statement = sql.workers
    else:
        statement = sql.workers_without_lanes
    rows = await connection.fetch(statement)
    return [WorkerInfo.from_record(row) for row in rows]
