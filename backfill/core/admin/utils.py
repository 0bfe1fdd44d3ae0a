"""Graphile's worker utilities in Python: enqueue, act on jobs by id or key, clean up, and look around.

:class:`WorkerUtils` wraps a pool (its own, made from a DSN, or the caller's, which it never closes)::

    async with WorkerUtils(os.environ["DATABASE_URL"]) as utils:
        await utils.permanently_fail_jobs([42], "bad input, do not retry")
        for job in await utils.list_jobs(state=JobState.FAILED, limit=20):
            print(job.id, job.task_identifier, job.last_error)

The acting methods call Graphile's own SQL functions (``complete_jobs``, ``permanently_fail_jobs``,
``reschedule_jobs``, ``remove_job``, ``force_unlock_workers``), so they behave exactly as Node's utilities do:
a job locked by a worker (within Graphile's 4-hour lock expiry) is left alone and not returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Final

import asyncpg

from backfill.core.admin import job_selection
from backfill.core.admin import queries as admin_queries
from backfill.core.admin.job_selection import JobFilter
from backfill.core.admin.models import CleanupReport, JobInfo, JobState, QueueStats, TaskStats, WorkerInfo
from backfill.core.checks import BIGINT_MAX, SMALLINT_MAX, SMALLINT_MIN, check_aware, check_int, check_name, is_aware
from backfill.core.db import Executor, LazyPool
from backfill.core.enqueue import add_job_spec, add_jobs
from backfill.core.errors import ConfigurationError, JobSpecError
from backfill.core.jobs import Job, JobKeyMode, JobSpec, JobSql
from backfill.core.migrations.graphile import MigrationReport, migrate
from backfill.core.migrations.own import CORE_LINES, migrate_lines
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements

JobTransform = Callable[[JobSpec], JobSpec | None]

# Graphile 0.18's cleanup task names, and the set its cleanup() runs when given none. Deleting permanently
# failed jobs destroys evidence, so like Graphile it is only done when asked for.
CLEANUP_TASKS: Final = ("GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS")
DEFAULT_CLEANUP_TASKS: Final = ("GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS")

_OWN_POOL_SIZE = 4  # the utilities run one statement at a time per call; a few serve concurrent callers


class ActionSql(Statements, file=("backfill.core.sql", "actions.sql")):
    """Graphile's acting functions and cleanup tasks (see actions.sql)."""

    includes = (JobSql,)
    complete_jobs: str
    permanently_fail_jobs: str
    reschedule_jobs: str
    remove_job: str
    returned_rows: str
    force_unlock_workers: str
    delete_permafailed_jobs: str
    gc_task_identifiers: str
    gc_job_queues: str


class WorkerUtils:
    """Job utilities over one pool. Use as ``async with``, or call :meth:`close` when done.

    ``database`` is a DSN (a pool is opened on first use and closed by :meth:`close`) or an
    ``asyncpg.Pool`` (used as is and never closed here). ``transform``, if given, sees every job enqueued
    through :meth:`add_job`/:meth:`add_jobs` and returns the spec to enqueue, or ``None`` to drop the job.
    """

    def __init__(
        self,
        database: str | asyncpg.Pool[Any],
        *,
        schema: str | SchemaName | None = None,
        transform: JobTransform | None = None,
    ) -> None:
        if not isinstance(database, (str, asyncpg.Pool)) or database == "":
            raise ConfigurationError("WorkerUtils needs a database URL or an asyncpg.Pool")
        if transform is not None and not callable(transform):
            raise ConfigurationError("transform must be a callable taking a JobSpec")
        self.schema = SchemaName.coerce(schema)
        self._pool = LazyPool(database, max_size=_OWN_POOL_SIZE)
        self._transform = transform

    async def __aenter__(self) -> WorkerUtils:
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
        return self._pool.connection(
            what, missing_hint=f"is the schema {self.schema} installed? run `backfill migrate`"
        )

    # -- schema -------------------------------------------------------------------------------------------

    async def migrate(self) -> MigrationReport:
        """Install or upgrade Graphile's schema to revision 20, then backfill's own tables beside it."""
        pool = await self._get_pool()
        report = await migrate(pool, self.schema)
        await migrate_lines(pool, self.schema, CORE_LINES)
        return report

    # -- enqueueing ---------------------------------------------------------------------------------------

    async def add_job(
        self,
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
    ) -> Job | None:
        """Enqueue one job (see :func:`backfill.core.enqueue.add_job`); ``None`` if ``transform`` dropped it."""
        spec = self._transformed(
            JobSpec(identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, timeout)
        )
        if spec is None:
            return None
        return await add_job_spec(await self._get_pool(), spec, job_key_mode=job_key_mode, schema=self.schema)

    async def add_jobs(self, specs: Sequence[JobSpec], *, job_key_preserve_run_at: bool = False) -> list[Job]:
        """Enqueue many jobs in one statement; the jobs ``transform`` dropped are left out of the result."""
        if isinstance(specs, JobSpec):
            raise JobSpecError("specs", "must be a sequence of JobSpec, not a single JobSpec")
        kept = [spec for spec in (self._transformed(spec) for spec in specs) if spec is not None]
        return await add_jobs(
            await self._get_pool(), kept, job_key_preserve_run_at=job_key_preserve_run_at, schema=self.schema
        )

    def _transformed(self, spec: JobSpec) -> JobSpec | None:
        if self._transform is None or not isinstance(spec, JobSpec):  # add_jobs names a non-JobSpec itself
            return spec
        result = self._transform(spec)
        if result is not None and not isinstance(result, JobSpec):
            raise JobSpecError("transform", f"must return a JobSpec or None, not {type(result).__name__}")
        return result

    # -- acting on jobs -----------------------------------------------------------------------------------

    async def complete_jobs(self, ids: Iterable[int]) -> list[Job]:
        """Delete these jobs as done; returns those deleted (locked ones are skipped, as in Graphile)."""
        job_ids = _job_ids(ids)
        async with self._connection("complete_jobs") as connection:
            rows = await connection.fetch(ActionSql.for_schema(self.schema).complete_jobs, job_ids)
        return [Job.from_record(row) for row in rows]

    async def permanently_fail_jobs(self, ids: Iterable[int], reason: str | None = None) -> list[Job]:
        """Set ``attempts = max_attempts`` and ``last_error = reason`` (Graphile's default text when None)."""
        job_ids = _job_ids(ids)
        if reason is not None and not isinstance(reason, str):
            raise JobSpecError("reason", f"must be a string, not {type(reason).__name__}")
        async with self._connection("permanently_fail_jobs") as connection:
            rows = await connection.fetch(ActionSql.for_schema(self.schema).permanently_fail_jobs, job_ids, reason)
        return [Job.from_record(row) for row in rows]

    async def reschedule_jobs(
        self,
        ids: Iterable[int],
        *,
        run_at: datetime | None = None,
        priority: int | None = None,
        attempts: int | None = None,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Change the given fields of unlocked jobs (``None`` keeps a field); returns the jobs changed."""
        job_ids = _job_ids(ids)
        if run_at is not None and not is_aware(run_at):
            raise JobSpecError("run_at", "must be a timezone-aware datetime")
        check_int("priority", priority, SMALLINT_MIN, SMALLINT_MAX, optional=True, error=JobSpecError)
        check_int("attempts", attempts, 0, SMALLINT_MAX, optional=True, error=JobSpecError)
        check_int("max_attempts", max_attempts, 1, SMALLINT_MAX, optional=True, error=JobSpecError)
        async with self._connection("reschedule_jobs") as connection:
            rows = await connection.fetch(
                ActionSql.for_schema(self.schema).reschedule_jobs, job_ids, run_at, priority, attempts, max_attempts
            )
        return [Job.from_record(row) for row in rows]

    async def remove_job(self, job_key: str) -> Job | None:
        """Delete the job with this key; a running one instead loses its key and gets no further attempt.

        Returns the job deleted or disarmed, ``None`` when no job has the key.
        """
        check_name("job_key", job_key, error=JobSpecError)
        async with self._connection("remove_job") as connection:
            row = await connection.fetchrow(ActionSql.for_schema(self.schema).remove_job, job_key)
        return None if row is None else Job.from_record(row)

    async def force_unlock_workers(self, worker_ids: Iterable[str]) -> None:
        """Release every job and queue locked by these workers (known to be dead) so others can take them."""
        if isinstance(worker_ids, str):
            raise ConfigurationError("worker_ids must be a list of worker ids, not one string")
        ids = list(worker_ids)
        if not all(isinstance(worker_id, str) and worker_id for worker_id in ids):
            raise ConfigurationError("worker_ids must be non-empty strings")
        async with self._connection("force_unlock_workers") as connection:
            await connection.execute(ActionSql.for_schema(self.schema).force_unlock_workers, ids)

    async def cleanup(
        self, tasks: Iterable[str] = DEFAULT_CLEANUP_TASKS, *, task_identifiers_to_keep: Iterable[str] = ()
    ) -> CleanupReport:
        """Run Graphile's cleanup tasks (see :data:`CLEANUP_TASKS`), permanently failed jobs first so that the
        tasks and queues only they referenced are collected in the same call."""
        if isinstance(tasks, str):
            raise ConfigurationError("tasks must be a list of cleanup task names, not one string")
        chosen = tuple(dict.fromkeys(tasks))
        unknown = [name for name in chosen if name not in CLEANUP_TASKS]
        if unknown:
            raise ConfigurationError(
                f"unknown cleanup task {', '.join(map(repr, unknown))}; known: {', '.join(CLEANUP_TASKS)}"
            )
        keep = [] if isinstance(task_identifiers_to_keep, str) else list(task_identifiers_to_keep)
        if isinstance(task_identifiers_to_keep, str) or not all(isinstance(name, str) for name in keep):
            raise ConfigurationError("task_identifiers_to_keep must be a list of task identifiers")
        sql = ActionSql.for_schema(self.schema)
        statements = {
            "DELETE_PERMAFAILED_JOBS": sql.delete_permafailed_jobs,
            "GC_TASK_IDENTIFIERS": sql.gc_task_identifiers,
            "GC_JOB_QUEUES": sql.gc_job_queues,
        }
        counts = dict.fromkeys(CLEANUP_TASKS, 0)
        async with self._connection("cleanup") as connection:
            for name in ("DELETE_PERMAFAILED_JOBS", "GC_TASK_IDENTIFIERS", "GC_JOB_QUEUES"):
                if name in chosen:
                    args = (keep,) if name == "GC_TASK_IDENTIFIERS" else ()
                    counts[name] = int(await connection.fetchval(statements[name], *args))
        return CleanupReport(
            tasks=chosen,
            deleted_permafailed_jobs=counts["DELETE_PERMAFAILED_JOBS"],
            deleted_task_identifiers=counts["GC_TASK_IDENTIFIERS"],
            deleted_job_queues=counts["GC_JOB_QUEUES"],
        )

    # -- looking around -----------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> JobInfo | None:
        """One job with its derived state, or ``None`` if no job has this id."""
        check_int("job_id", job_id, 1, BIGINT_MAX, optional=True, error=JobSpecError)
        async with self._connection("get_job") as connection:
            return await admin_queries.get_job(connection, self.schema, job_id)

    async def list_jobs(
        self,
        *,
        task: str | None = None,
        queue: str | None = None,
        state: JobState | str | None = None,
        locked_by: str | None = None,
        key: str | None = None,
        limit: int = 100,
        after_id: int | None = None,
        exception_type: str | None = None,
        min_priority: int | None = None,
        max_priority: int | None = None,
        required_flags: Sequence[str] | None = None,
        forbidden_flags: Sequence[str] | None = None,
        error: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[JobInfo]:
        """Jobs matching every filter given, by ascending id; pass the last id seen as ``after_id`` for the
        next page. ``exception_type`` ("KeyError") matches the type of the exception that failed a job's
        last attempt, as backfill's error history recorded it. ``min_priority``/``max_priority`` (inclusive),
        ``required_flags`` (any of) and ``forbidden_flags`` (none of) select what a worker with those
        :class:`~backfill.core.run.options.WorkerOptions` fetches: a lane, in backfill's runner.
        ``error`` matches jobs whose ``last_error`` contains that text in any case (taken literally: ``%``
        and ``_`` are not wildcards); ``created_after`` (inclusive) and ``created_before`` (exclusive) bound
        ``created_at`` and must be timezone-aware."""
        if state is not None:
            try:
                state = JobState(state)
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                raise ConfigurationError(f"unknown job state {state!r}; known: {known}") from None
        strings = (("task", task), ("queue", queue), ("locked_by", locked_by), ("key", key))
        for name, value in (*strings, ("exception_type", exception_type), ("error", error)):
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a string, not {type(value).__name__}")
        for name, moment in (("created_after", created_after), ("created_before", created_before)):
            check_aware(name, moment, optional=True)
        check_int("limit", limit, 1, 2**31 - 1, optional=True)
        check_int("after_id", after_id, 0, BIGINT_MAX, optional=True)
        for name, bound in (("min_priority", min_priority), ("max_priority", max_priority)):
            check_int(name, bound, SMALLINT_MIN, SMALLINT_MAX, optional=True)
        for name, flags in (("required_flags", required_flags), ("forbidden_flags", forbidden_flags)):
            if flags is not None and (isinstance(flags, str) or not all(isinstance(f, str) for f in flags)):
                raise ConfigurationError(f"{name} must be a list of strings")
        async with self._connection("list_jobs") as connection:
            return await admin_queries.list_jobs(
                connection,
                self.schema,
                task=task,
                queue=queue,
                state=state,
                locked_by=locked_by,
                key=key,
                limit=limit,
                after_id=after_id,
                exception_type=exception_type,
                min_priority=min_priority,
                max_priority=max_priority,
                required_flags=required_flags,
                forbidden_flags=forbidden_flags,
                error=error,
                created_after=created_after,
                created_before=created_before,
            )

    async def queue_stats(self) -> list[QueueStats]:
        """Every named queue, by name."""
        async with self._connection("queue_stats") as connection:
            return await admin_queries.queue_stats(connection, self.schema)

    async def task_stats(self) -> list[TaskStats]:
        """Every known task identifier with its jobs counted by state, by identifier."""
        async with self._connection("task_stats") as connection:
            return await admin_queries.task_stats(connection, self.schema)

    async def workers(self) -> list[WorkerInfo]:
        """Registered backfill workers, then lock owners that never registered (e.g. Node workers)."""
        async with self._connection("workers") as connection:
            return await admin_queries.workers(connection, self.schema)

    # -- choosing jobs for bulk actions ---------------------------------------------------------------------

    async def count_jobs(self, which: JobFilter, *, actable_only: bool = False) -> int:
        """How many jobs ``which`` matches; ``actable_only`` leaves out those locked by a worker (which
        :meth:`complete_jobs` and the other acting methods would leave alone)."""
        async with self._connection("count_jobs") as connection:
            return await job_selection.count_jobs(connection, self.schema, which, actable_only=actable_only)

    async def job_id_page(self, which: JobFilter, *, after: int = 0, limit: int = 1000) -> list[int]:
        """Ids of the next ``limit`` jobs ``which`` matches above ``after``, ascending: walk them a page at a
        time, handing each page to an acting method, so that each page is a short transaction of its own."""
        check_int("after", after, 0, BIGINT_MAX, optional=True)
        check_int("limit", limit, 1, 2**31 - 1, optional=True)
        async with self._connection("job_id_page") as connection:
            return await job_selection.job_id_page(connection, self.schema, which, after=after, limit=limit)


def _job_ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, (str, bytes, int)):
        raise JobSpecError("ids", "must be a list of job ids")
    checked = list(ids)
    for position, job_id in enumerate(checked):
        check_int(f"ids[{position}]", job_id, 1, BIGINT_MAX, must="a positive integer job id", error=JobSpecError)
    return checked
