"""Adding jobs from Python: ``add_job`` and ``add_jobs``, over Graphile's SQL functions or, for a single job
without a job key, over one statement that does what ``add_job`` does for it (enqueue.sql's insert_job).

Both accept a pool or a connection. Given a connection, they run on it as it is, so a caller inside a
transaction enqueues inside that transaction: a rollback means the job never existed, and no worker sees
it before commit (the ``jobs:insert`` notification is only delivered on commit, too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any, Literal, overload

import asyncpg

from backfill.core.db import ConnectionSource, Executor, connection_from
from backfill.core.errors import DatabaseError, JobSpecError
from backfill.core.jobs import Job, JobKeyMode, JobSpec, JobSql, jobs_from_rows, jobs_written
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements


class EnqueueSql(Statements, file=("backfill.core.sql", "enqueue.sql")):
    """The statements that add jobs (see enqueue.sql)."""

    includes = (JobSql,)
    add_job: str
    insert_job: str
    insert_jobs_call: str  # the part both insert_jobs statements share
    insert_jobs: str
    insert_jobs_counted: str
    add_jobs_call: str  # the part both add_jobs statements share
    add_jobs: str
    add_jobs_counted: str
    names_of: str


@cache  # statement text per schema, built once: add_job is on every caller's request path
def add_job_sql(schema: SchemaName, *, dbapi: bool = False) -> str:
    """``add_job`` with the arguments of :func:`add_job_arguments`, as asyncpg (``$n``) or, with ``dbapi``,
    DB-API drivers such as psycopg (``%s``) number their parameters."""
    statement = EnqueueSql.for_schema(schema).add_job
    return dbapi_form(statement) if dbapi else statement


_NUMBERED_PARAMETER = re.compile(r"\$(\d+)")


def dbapi_form(statement: str) -> str:
    """``statement`` with ``$1``..``$n`` written ``%s``: DB-API drivers number parameters by their order in the
    text, so the ``$n`` must appear once each and in order (checked: a reordered statement would silently swap
    its arguments). A literal ``%`` is doubled, as those drivers read it as the start of a mark."""
    numbers = [int(number) for number in _NUMBERED_PARAMETER.findall(statement)]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"parameters must appear once each, in order, to be numbered as %s; found {numbers}")
    return _NUMBERED_PARAMETER.sub("%s", statement.replace("%", "%%"))


@cache
def insert_job_sql(schema: SchemaName, *, dbapi: bool = False) -> str:
    """``insert_job`` (a job without a job key) with the arguments of :func:`insert_job_arguments`, numbered
    for asyncpg or, with ``dbapi``, for DB-API drivers."""
    statement = EnqueueSql.for_schema(schema).insert_job
    return dbapi_form(statement) if dbapi else statement


def enqueue_statement(
    spec: JobSpec, job_key_mode: JobKeyMode | str | None, schema: SchemaName, *, dbapi: bool = False
) -> tuple[str, tuple[Any, ...], tuple[str, ...]]:
    """The statement that enqueues ``spec`` alone, its arguments, and the field each argument holds (for
    errors): insert_job when the spec has no job key (a third of add_job's cost), Graphile's add_job when it has
    one. The job key mode is checked either way, so a bad one fails the same whether or not a key is given."""
    if spec.job_key is None:
        _check_job_key_mode(job_key_mode)
        return insert_job_sql(schema, dbapi=dbapi), insert_job_arguments(spec), _INSERT_JOB_FIELDS
    return add_job_sql(schema, dbapi=dbapi), add_job_arguments(spec, job_key_mode), _ADD_JOB_FIELDS


def insert_job_arguments(spec: JobSpec) -> tuple[Any, ...]:
    """The parameters of :func:`insert_job_sql` for ``spec``, which must have no job key."""
    return (
        spec.identifier,
        spec.payload_json,
        spec.queue_name,
        spec.run_at,
        spec.max_attempts,
        spec.priority,
        list(spec.flags) if spec.flags is not None else None,
    )


_INSERT_JOB_FIELDS = ("task", "payload", "queue_name", "run_at", "max_attempts", "priority", "flags")


def add_job_arguments(spec: JobSpec, job_key_mode: JobKeyMode | str | None) -> tuple[Any, ...]:
    """The parameters of :func:`add_job_sql` for ``spec``; a bad ``job_key_mode`` raises :class:`JobSpecError`."""
    identifier, payload, queue_name, run_at, max_attempts, priority, flags = insert_job_arguments(spec)
    mode = _check_job_key_mode(job_key_mode)
    return identifier, payload, queue_name, run_at, max_attempts, spec.job_key, priority, flags, mode


# What each parameter of add_job_sql holds, for errors that name one (see _raise_unsendable).
_ADD_JOB_FIELDS = ("task", "payload", "queue_name", "run_at", "max_attempts", "job_key", "priority", "flags")


def _raise_unsendable(error: asyncpg.PostgresError, fields: Sequence[str]) -> None:
    """asyncpg refuses, before sending, a value it cannot encode (text holding a lone surrogate, which is not
    valid Unicode) with "invalid input for query argument $2: '<the value>' (<why>)": the value is the job's
    payload, which must never reach a message or a log. Raise instead a JobSpecError naming the field and why,
    without the value (and without the original as cause, which quotes it)."""
    text = str(error)
    if not text.startswith("invalid input for query argument $"):
        return
    number = text[len("invalid input for query argument $") :].split(":", 1)[0]
    field_name = fields[int(number) - 1] if number.isdigit() and 0 < int(number) <= len(fields) else "spec"
    why = text[text.rfind(" (") + 2 : -1] if text.endswith(")") and " (" in text else "it cannot be encoded"
    raise JobSpecError(field_name, f"cannot be sent to PostgreSQL: {why}") from None


def job_spec_json_fields(spec: JobSpec) -> list[Any]:
    """``spec`` as the JSON array that jobs.sql's ``job_spec_fields`` reads: ``[identifier, payload text, queue,
    run_at, max_attempts, key, priority, flags]`` (the payload as its JSON text, decoded only by the database)."""
    return [
        spec.identifier,
        spec.payload_json,
        spec.queue_name,
        None if spec.run_at is None else spec.run_at.isoformat(),
        spec.max_attempts,
        spec.job_key,
        spec.priority,
        None if spec.flags is None else list(spec.flags),
    ]


def insert_jobs_arguments(specs: Sequence[JobSpec]) -> tuple[str, str]:
    """``specs`` (none with a job key) as the two JSON texts that enqueue.sql's ``insert_jobs`` reads: the jobs,
    ``[shape, payload text, run_at]`` each, and the shapes they refer to by position,
    ``[identifier, queue, max_attempts, priority, flags]`` each, the flags as the object Graphile stores
    (``{"flag": true, ...}``; ``None`` for no flags, as add_jobs stores none for an empty list)."""
    shape_positions: dict[tuple[Any, ...], int] = {}
    shapes: list[list[Any]] = []
    rows = []
    for spec in specs:
        flags = spec.flags  # a tuple: JobSpec freezes it
        shape = (spec.identifier, spec.queue_name, spec.max_attempts, spec.priority, flags)
        position = shape_positions.get(shape)
        if position is None:
            position = shape_positions[shape] = len(shapes)
            flag_object = None if flags is None else dict.fromkeys(flags, True) or None
            shapes.append([spec.identifier, spec.queue_name, spec.max_attempts, spec.priority, flag_object])
        run_at = spec.run_at
        rows.append([position, spec.payload_json, None if run_at is None else run_at.isoformat()])
    return encode_spec_rows(rows), encode_spec_rows(shapes)


# A list of spec arrays (job_spec_json_fields) as the JSON text of one parameter. ensure_ascii=False: the text
# goes to PostgreSQL as UTF-8 anyway, and escapes would only make it longer.
encode_spec_rows = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


async def add_job(
    source: ConnectionSource,
    identifier: str,
    payload: Any = None,
    *,
    queue_name: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    job_key: str | None = None,
    job_key_mode: JobKeyMode | str | None = None,
    priority: int | None = None,
    flags: Sequence[str] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the job's timeout, not this call's
    keep_result: float | timedelta | None = None,
    schema: str | SchemaName | None = None,
) -> Job:
    """Enqueue one job and return its row (the existing row when a job key deduplicated it).

    ``job_key_mode`` defaults to ``replace``; it only matters when ``job_key`` is given. ``timeout`` (seconds)
    overrides the task's timeout for this job; ``keep_result`` (seconds or a timedelta) keeps its outcome that
    long after it ends (``backfill_job_results``); both are stored as flags.
    """
    spec = JobSpec(
        identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, timeout, keep_result
    )
    return await add_job_spec(source, spec, job_key_mode=job_key_mode, schema=schema)


async def add_job_spec(
    source: ConnectionSource,
    spec: JobSpec,
    *,
    job_key_mode: JobKeyMode | str | None = None,
    schema: str | SchemaName | None = None,
) -> Job:
    """:func:`add_job` for a :class:`JobSpec` already built (by an interceptor, say)."""
    if not isinstance(spec, JobSpec):
        raise JobSpecError("spec", f"must be a JobSpec, not {type(spec).__name__}")
    identifier, job_key = spec.identifier, spec.job_key
    schema_name = SchemaName.coerce(schema)
    statement, arguments, fields = enqueue_statement(spec, job_key_mode, schema_name)
    async with connection_from(source, stateless=True) as connection:
        try:
            row = await connection.fetchrow(statement, *arguments)
            if row is None:  # the keyed job was locked between the key check and the upsert
                raise DatabaseError(f"add_job({identifier!r}) wrote no job: job key {job_key!r} is busy")
            # add_job's last argument is the job key mode, checked (enqueue_statement).
            if job_key is not None and arguments[-1] == JobKeyMode.UNSAFE_DEDUPE.value and row["revision"] > 0:
                # The existing job was kept as it was, possibly in another queue: read its names.
                task_names, queue_names = await _names_of(connection, schema_name, [row])
                return Job.from_record(
                    row, task_identifier=task_names[row["task_id"]], queue_name=queue_names.get(row["job_queue_id"])
                )
        except asyncpg.PostgresError as error:
            _raise_unsendable(error, fields)
            raise DatabaseError(f"add_job({identifier!r}) failed: {error}") from error
    return Job.from_record(row, task_identifier=spec.identifier, queue_name=spec.queue_name)


@overload
async def add_jobs(
    source: ConnectionSource,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str | SchemaName | None = None,
    returning: Literal[True] = True,
) -> list[Job]: ...


@overload
async def add_jobs(
    source: ConnectionSource,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str | SchemaName | None = None,
    returning: Literal[False],
) -> int: ...


@overload
async def add_jobs(
    source: ConnectionSource,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str | SchemaName | None = None,
    returning: bool,
) -> list[Job] | int: ...


async def add_jobs(
    source: ConnectionSource,
    specs: Sequence[JobSpec],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str | SchemaName | None = None,
    returning: bool = True,
) -> list[Job] | int:
    """Enqueue many jobs in one statement (one notification); returns the rows written, or with
    ``returning=False`` only how many were written (a keyed spec whose job is running writes none), which
    spares sending the rows and building a :class:`Job` for each."""
    if isinstance(specs, JobSpec):
        raise JobSpecError("specs", "must be a sequence of JobSpec, not a single JobSpec")
    first_position_of_key: dict[str, int] = {}  # also tells whether any spec has a key
    for position, spec in enumerate(specs):
        if not isinstance(spec, JobSpec):
            raise JobSpecError(f"specs[{position}]", f"must be a JobSpec, not {type(spec).__name__}")
        if spec.job_key is not None:
            # One upsert statement cannot touch the same key twice (PostgreSQL refuses the whole batch), so
            # say which spec repeats which, before anything is sent.
            earlier = first_position_of_key.setdefault(spec.job_key, position)
            if earlier != position:
                raise JobSpecError(
                    f"specs[{position}].job_key", f"{spec.job_key!r} repeats specs[{earlier}].job_key in one batch"
                )
    if not specs:
        return [] if returning else 0
    schema_name = SchemaName.coerce(schema)
    statements = EnqueueSql.for_schema(schema_name)
    if first_position_of_key:  # keys need Graphile's add_jobs (replace, preserve_run_at, locked keyed jobs)
        arguments: tuple[Any, ...] = (
            encode_spec_rows([job_spec_json_fields(spec) for spec in specs]),
            job_key_preserve_run_at,
        )
        counted, listed = statements.add_jobs_counted, statements.add_jobs
    else:
        arguments = insert_jobs_arguments(specs)
        counted, listed = statements.insert_jobs_counted, statements.insert_jobs
    async with connection_from(source, stateless=True) as connection:
        try:
            if not returning:
                written: int = await connection.fetchval(counted, *arguments)
                return written
            if not first_position_of_key:
                arrays = await connection.fetchrow(listed, *arguments)
                assert arrays is not None  # an aggregate without group by always returns its row
                return jobs_written(specs, arrays)
            rows = await connection.fetch(listed, *arguments)
            task_names, queue_names = await _names_of(connection, schema_name, rows, specs)
        except asyncpg.PostgresError as error:
            _raise_unsendable(error, ("specs",))
            raise DatabaseError(f"add_jobs ({len(specs)} specs) failed: {error}") from error
    return jobs_from_rows(rows, task_names, queue_names)


async def _names_of(
    connection: Executor, schema: SchemaName, rows: Sequence[asyncpg.Record], specs: Sequence[JobSpec] = ()
) -> tuple[dict[int, str], dict[int, str]]:
    """Task identifiers and queue names for the ids in ``rows`` (a second statement sees them).

    When every spec names the same task and queue — the usual bulk enqueue — every row written carries
    them (an upsert takes the new spec's task and queue too), so no lookup is needed.
    """
    if specs and len({s.identifier for s in specs}) == 1 and len({s.queue_name for s in specs}) == 1:
        identifier, queue_name = specs[0].identifier, specs[0].queue_name
        tasks_known = {row["task_id"]: identifier for row in rows}
        queues_known = {} if queue_name is None else {row["job_queue_id"]: queue_name for row in rows}
        return tasks_known, queues_known
    task_ids = sorted({row["task_id"] for row in rows})
    queue_ids = sorted({row["job_queue_id"] for row in rows if row["job_queue_id"] is not None})
    found = await connection.fetch(
        EnqueueSql.for_schema(schema).names_of,
        task_ids,
        queue_ids,
    )
    tasks = {row["id"]: row["name"] for row in found if row["kind"] == "task"}
    queues = {row["id"]: row["name"] for row in found if row["kind"] == "queue"}
    return tasks, queues


def _check_job_key_mode(mode: JobKeyMode | str | None) -> str:
    if mode is None:
        return JobKeyMode.REPLACE.value
    try:
        return JobKeyMode(mode).value
    except ValueError:
        allowed = ", ".join(m.value for m in JobKeyMode)
        raise JobSpecError("job_key_mode", f"must be one of {allowed}, got {mode!r}") from None
