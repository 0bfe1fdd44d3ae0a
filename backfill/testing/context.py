"""A :class:`~backfill.core.JobContext` for calling a handler in a unit test, without a database.

:func:`job_context` builds the context a worker would hand the handler for one attempt of one job. What the
handler enqueues through it (``ctx.add_job``, ``ctx.add_jobs``) is recorded in ``ctx.added_jobs`` instead of
being written, and returned as stand-in :class:`~backfill.core.Job` values, so a test can check what would have
been enqueued. Anything that needs the database itself (``ctx.pool``, ``ctx.connection()``) raises
:class:`NoDatabaseError`, naming what was asked for, unless a real pool was given with ``pool=``; enqueueing is
recorded either way, so a test never leaves jobs behind by accident.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, cast

import asyncpg

from backfill.core import BackfillError, Job, JobContext, JobKeyMode, JobSpec, JobSpecError, SchemaName

DEFAULT_WORKER_ID = "backfill-testing"
GRAPHILE_MAX_ATTEMPTS = 25  # Graphile's default for a job enqueued without max_attempts


class NoDatabaseError(BackfillError):
    """A handler under test used the database through a context made without one."""


@dataclass(frozen=True, slots=True)
class AddedJob:
    """A job a handler enqueued through a test context: its ``spec`` (after the context's ``transform``, if one
    was given) and the ``job_key_mode`` asked for."""

    spec: JobSpec
    job_key_mode: JobKeyMode | None = None
    job: Job | None = None  # the stand-in returned to the handler

    @property
    def identifier(self) -> str:
        return self.spec.identifier

    @property
    def payload(self) -> Any:
        """The payload as the job's handler would receive it (its JSON, decoded)."""
        return json.loads(self.spec.payload_json)


class _NoDatabase:
    """Stands in for the pool of a context made without one: any use says what happened."""

    def __getattr__(self, name: str) -> NoReturn:
        raise NoDatabaseError(
            f"this JobContext was made by backfill.testing.job_context() without a database, so ctx.pool.{name} is "
            "not available: pass pool= to give it one, or run the job against a database with run_jobs()"
        )


@dataclass(slots=True)
class RecordingJobContext(JobContext):
    """A :class:`~backfill.core.JobContext` whose ``add_job``/``add_jobs`` record into ``added_jobs``."""

    added_jobs: list[AddedJob] = field(default_factory=list)

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
        """Record the job instead of enqueueing it; ``None`` when the context's ``transform`` dropped it."""
        mode = _job_key_mode(job_key_mode)
        spec: JobSpec | None = JobSpec(
            identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, timeout
        )
        return self._record(spec, mode)

    async def add_jobs(self, specs: Sequence[JobSpec], *, job_key_preserve_run_at: bool = False) -> list[Job]:
        """Record the jobs instead of enqueueing them (those the context's ``transform`` dropped are left out)."""
        mode = JobKeyMode.PRESERVE_RUN_AT if job_key_preserve_run_at else None
        return [job for spec in specs if (job := self._record(spec, mode)) is not None]

    def _record(self, spec: JobSpec | None, mode: JobKeyMode | None) -> Job | None:
        if spec is not None and self.transform is not None:
            spec = self.transform(spec)
        if spec is None:
            return None
        job = _stand_in(spec, len(self.added_jobs) + 1)  # ids 1, 2, ... in the order recorded
        self.added_jobs.append(AddedJob(spec, mode, job))
        return job


def job_context(
    payload: Any = None,
    *,
    task: str = "test_task",
    attempt: int = 1,
    max_attempts: int = GRAPHILE_MAX_ATTEMPTS,
    job_id: int = 1,
    queue_name: str | None = None,
    priority: int = 0,
    key: str | None = None,
    flags: Iterable[str] = (),
    run_at: datetime | None = None,
    job: Job | None = None,
    pool: asyncpg.Pool[Any] | None = None,
    schema: SchemaName | str | None = None,
    transform: Callable[[JobSpec], JobSpec | None] | None = None,
    worker_id: str = DEFAULT_WORKER_ID,
) -> RecordingJobContext:
    """The context of attempt ``attempt`` of a job of ``task`` carrying ``payload``, as a worker builds it.

    ``ctx.job.payload`` is ``payload`` as the handler would get it from the database (its JSON, decoded), so pass
    the handler that value too. ``job`` replaces the job built from the other arguments. ``transform`` is applied to
    every job enqueued through the context, as a worker applies its ``before_schedule`` hooks (none by default:
    ``added_jobs`` holds what the handler asked for). ``pool``: a real pool for ``ctx.pool`` and
    ``ctx.connection()``; without one, using them raises :class:`NoDatabaseError`.
    """
    if job is None:
        if max_attempts < 1 or not 1 <= attempt <= max_attempts:
            raise ValueError(f"attempt must be between 1 and max_attempts ({max_attempts}), not {attempt}")
        spec = JobSpec(task, payload, queue_name, run_at, max_attempts, key, priority, tuple(flags))
        job = _stand_in(spec, job_id)._replace(attempts=attempt)
    logger = logging.LoggerAdapter(
        logging.getLogger("backfill.task"),
        {
            "job_id": job.id,
            "task": job.task_identifier,
            "attempt": job.attempts,
            "queue": job.queue_name,
            "worker_id": worker_id,
        },
    )
    return RecordingJobContext(
        job=job,
        worker_id=worker_id,
        pool=pool if pool is not None else cast("asyncpg.Pool[Any]", _NoDatabase()),
        schema=SchemaName.coerce(schema),
        logger=logger,
        transform=transform,
    )


def _job_key_mode(value: JobKeyMode | str | None) -> JobKeyMode | None:
    if value is None or isinstance(value, JobKeyMode):
        return value
    try:
        return JobKeyMode(value)
    except ValueError:
        known = ", ".join(mode.value for mode in JobKeyMode)
        raise JobSpecError("job_key_mode", f"must be one of {known}, got {value!r}") from None


def _stand_in(spec: JobSpec, job_id: int) -> Job:
    """The job ``spec`` would be once enqueued, with Graphile's defaults: not a row, no database involved."""
    now = datetime.now(UTC)
    return Job(
        id=job_id,
        task_identifier=spec.identifier,
        payload=json.loads(spec.payload_json),
        queue_name=spec.queue_name,
        priority=spec.priority if spec.priority is not None else 0,
        run_at=spec.run_at if spec.run_at is not None else now,
        attempts=0,
        max_attempts=spec.max_attempts if spec.max_attempts is not None else GRAPHILE_MAX_ATTEMPTS,
        last_error=None,
        created_at=now,
        updated_at=now,
        key=spec.job_key,
        locked_at=None,
        locked_by=None,
        revision=0,
        flags=frozenset(spec.flags or ()),
    )
