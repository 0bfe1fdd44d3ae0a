"""The read side of the job utilities: jobs by filter, one job, queue, task and worker figures.

Each function takes a connection (or pool proxy) and a :class:`SchemaName` and returns values from
:mod:`backfill.core.admin.models`; errors are left to the caller (:class:`backfill.core.admin.utils.WorkerUtils`
wraps them). The statements are built once per schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from backfill.core.admin.models import JobInfo, JobState, QueueStats, TaskStats, WorkerInfo
from backfill.core.db import Executor
from backfill.core.schema import SchemaName

# JobState's rules (see its docstring) as SQL over a job row aliased ``j``. Both the reported state and the
# state filter use this one expression, so a job listed as "retrying" is also found by --state retrying.
STATE_SQL = """
    case
      when j.locked_at is not null then 'running'
      when j.attempts >= j.max_attempts then 'failed'
      when j.attempts > 0 and j.last_error is not null then 'retrying'
      when j.run_at > now() then 'scheduled'
      else 'waiting'
    end
"""

# Payload and flags as text: callers' pools need no JSON codec (as in enqueue.py).
_JOB_COLUMNS = f"""
    j.id, j.job_queue_id, j.task_id, j.payload::text as payload, j.priority, j.run_at, j.attempts,
    j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by,
    j.revision, j.flags::text as flags, j.is_available,
    t.identifier as task_identifier, q.queue_name, {STATE_SQL} as state
"""

ERRORS_TABLE = "backfill_job_errors"


def _exception_type_sql(schema: SchemaName, *, history: bool) -> str:
    """The exception type of a job's last failure, from backfill's error history, as SQL over ``j``.

    Only when that history row is the row's last error: a Node worker's later failure is not in the history,
    and the type of an earlier attempt must not be shown beside it. Null in a schema whose history has no
    exception_type column yet (backfill's own migrations not applied, or applied by an older backfill).
    """
    if not history:
        return "null::text"
    return f"""(
        select e.exception_type from {schema.qualify(ERRORS_TABLE)} as e
         where e.job_id = j.id and e.error is not distinct from j.last_error
         order by e.id desc limit 1
    )"""


async def has_exception_types(connection: Executor, schema: SchemaName) -> bool:
    """Whether the error history records exception types (core migration 3 is applied)."""
    return bool(
        await connection.fetchval(
            "select exists (select 1 from pg_attribute where attrelid = to_regclass($1::text)"
            " and attname = 'exception_type' and not attisdropped)",
            schema.qualify(ERRORS_TABLE),
        )
    )


def _jobs_from(schema: SchemaName) -> str:
    return f"""
        from {schema.qualify("_private_jobs")} as j
        join {schema.qualify("_private_tasks")} as t on t.id = j.task_id
        left join {schema.qualify("_private_job_queues")} as q on q.id = j.job_queue_id
    """


@cache
def _get_job_sql(schema: SchemaName, *, history: bool) -> str:
    exception_type = _exception_type_sql(schema, history=history)
    return f"select {_JOB_COLUMNS}, {exception_type} as exception_type {_jobs_from(schema)} where j.id = $1::bigint"


@cache
def _list_jobs_sql(schema: SchemaName, *, history: bool) -> str:
    # Each filter is skipped when its parameter is null. Ordered by id, and resumed with id > after_id, so
    # pages neither repeat nor skip a job however the others change between pages.
    exception_type = _exception_type_sql(schema, history=history)
    return f"""
        select * from (
          select {_JOB_COLUMNS}, {exception_type} as exception_type {_jobs_from(schema)}
           where ($1::text is null or t.identifier = $1::text)
             and ($2::text is null or q.queue_name = $2::text)
             and ($3::text is null or {STATE_SQL} = $3::text)
             and ($4::text is null or j.locked_by = $4::text)
             and ($5::text is null or j.key = $5::text)
             and ($6::bigint is null or j.id > $6::bigint)
             -- A worker's fetch filter (WorkerOptions): the slice of the table a lane's worker fetches.
             and ($9::int is null or j.priority >= $9::int)
             and ($10::int is null or j.priority <= $10::int)
             and ($11::text[] is null or j.flags ?| $11::text[])
             and ($12::text[] is null or (j.flags ?| $12::text[]) is not true)
        ) as listed
         where $8::text is null or listed.exception_type = $8::text
         order by listed.id
         limit $7::int
    """


async def get_job(connection: Executor, schema: SchemaName, job_id: int) -> JobInfo | None:
    history = await has_exception_types(connection, schema)
    row = await connection.fetchrow(_get_job_sql(schema, history=history), job_id)
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
) -> list[JobInfo]:
    history = await has_exception_types(connection, schema)
    rows = await connection.fetch(
        _list_jobs_sql(schema, history=history),
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
    )
    return [JobInfo.from_record(row) for row in rows]


@cache
def _queue_stats_sql(schema: SchemaName) -> str:
    # count(j.id) and min() skip the all-null row that the left join makes for a queue without jobs.
    return f"""
        with jobs as (
          select j.job_queue_id, j.id, j.run_at, {STATE_SQL} as state
            from {schema.qualify("_private_jobs")} as j
           where j.job_queue_id is not null
        )
        select q.queue_name, q.locked_by, q.locked_at,
               count(jobs.id)::int as total,
               count(jobs.id) filter (where jobs.state = 'waiting')::int as waiting,
               count(jobs.id) filter (where jobs.state = 'running')::int as running,
               now() - min(jobs.run_at) filter (where jobs.state = 'waiting') as oldest_waiting_age
          from {schema.qualify("_private_job_queues")} as q
          left join jobs on jobs.job_queue_id = q.id
         group by q.id
         order by q.queue_name
    """


async def queue_stats(connection: Executor, schema: SchemaName) -> list[QueueStats]:
    return [QueueStats.from_record(row) for row in await connection.fetch(_queue_stats_sql(schema))]


@cache
def _task_stats_sql(schema: SchemaName) -> str:
    return f"""
        with jobs as (
          select j.task_id, {STATE_SQL} as state from {schema.qualify("_private_jobs")} as j
        )
        select t.identifier as task_identifier,
               count(*) filter (where jobs.state = 'waiting')::int as waiting,
               count(*) filter (where jobs.state = 'scheduled')::int as scheduled,
               count(*) filter (where jobs.state = 'running')::int as running,
               count(*) filter (where jobs.state = 'retrying')::int as retrying,
               count(*) filter (where jobs.state = 'failed')::int as failed
          from {schema.qualify("_private_tasks")} as t
          left join jobs on jobs.task_id = t.id
         group by t.id
         order by t.identifier
    """


async def task_stats(connection: Executor, schema: SchemaName) -> list[TaskStats]:
    return [TaskStats.from_record(row) for row in await connection.fetch(_task_stats_sql(schema))]


WORKERS_TABLE = "backfill_workers"

# Stands in for backfill_workers in a database where no backfill worker ever registered (the table is
# created by backfill's own migrations): the same columns, no rows.
_NO_REGISTERED_WORKERS = """
    (select null::text as worker_id, null::text as hostname, null::int as pid, null::timestamptz as started_at,
            null::timestamptz as last_heartbeat_at, null::interval as dead_after, null::int as concurrency,
            null::text[] as tasks, null::text as version, null::text as lane
      where false)
"""


@cache
def _workers_sql(schema: SchemaName, *, registry: bool, lanes: bool) -> str:
    registered = schema.qualify(WORKERS_TABLE) if registry else _NO_REGISTERED_WORKERS
    # The lane column arrived with core migration 4; a registry made by an older backfill has none.
    lane = "w.lane" if lanes or not registry else "null::text"
    # A full join: registered workers holding nothing, and lock owners that never registered (Node workers).
    return f"""
        with held as (
          select locked_by as worker_id, count(*) as jobs, 0 as queues
            from {schema.qualify("_private_jobs")} where locked_by is not null group by locked_by
          union all
          select locked_by, 0, count(*)
            from {schema.qualify("_private_job_queues")} where locked_by is not null group by locked_by
        ), owners as (
          select worker_id, sum(jobs)::int as locked_jobs, sum(queues)::int as locked_queues
            from held group by worker_id
        )
        select coalesce(w.worker_id, o.worker_id) as worker_id,
               w.worker_id is not null as registered,
               case when w.worker_id is not null then w.last_heartbeat_at + w.dead_after >= now() end as alive,
               coalesce(o.locked_jobs, 0) as locked_jobs,
               coalesce(o.locked_queues, 0) as locked_queues,
               w.hostname, w.pid, w.started_at, w.last_heartbeat_at, w.dead_after, w.concurrency, w.tasks,
               w.version, {lane} as lane
          from {registered} as w
          full join owners as o on o.worker_id = w.worker_id
         order by registered desc, worker_id
    """


async def workers(connection: Executor, schema: SchemaName) -> list[WorkerInfo]:
    registry = bool(
        await connection.fetchval("select to_regclass($1::text) is not null", schema.qualify(WORKERS_TABLE))
    )
    lanes = registry and bool(
        await connection.fetchval(
            "select exists (select 1 from pg_attribute where attrelid = to_regclass($1::text)"
            " and attname = 'lane' and not attisdropped)",
            schema.qualify(WORKERS_TABLE),
        )
    )
    rows = await connection.fetch(_workers_sql(schema, registry=registry, lanes=lanes))
    return [WorkerInfo.from_record(row) for row in rows]
