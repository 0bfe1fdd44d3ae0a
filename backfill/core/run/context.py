"""What a handler gets as its second argument: the job, its attempt, a logger and database access."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from backfill.core.db import Executor
from backfill.core.enqueue import add_job_spec, add_jobs
from backfill.core.jobs import Job, JobKeyMode, JobSpec
from backfill.core.schema import SchemaName


@dataclass(slots=True)
class JobContext:
    """Per-attempt context handed to a task handler that takes a second parameter.

    ``abort_signal`` is set when the job's timeout has passed or the worker's shutdown grace period has run
    out; long handlers (synchronous ones above all, which cannot be cancelled) may check it to stop early.
    """

    job: Job
    worker_id: str
    pool: asyncpg.Pool[Any]
    schema: SchemaName
    logger: logging.LoggerAdapter[logging.Logger]
    abort_signal: asyncio.Event = field(default_factory=asyncio.Event)
    # The worker's before_schedule interceptors, applied to jobs enqueued through this context.
    transform: Callable[[JobSpec], JobSpec | None] | None = None

    @property
    def attempt(self) -> int:
        """1 on the first attempt, 2 on the first retry, and so on."""
        return self.job.attempts

    @property
    def is_last_attempt(self) -> bool:
        return self.job.attempts >= self.job.max_attempts

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Executor]:
        """A connection from the worker's pool for the handler's own queries."""
        async with self.pool.acquire() as connection:
            yield connection

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
        """Enqueue a follow-up job in the worker's schema; ``None`` when a before_schedule interceptor dropped it."""
        spec: JobSpec | None = JobSpec(
            identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, timeout
        )
        if self.transform is not None and spec is not None:
            spec = self.transform(spec)
        if spec is None:
            return None
        return await add_job_spec(self.pool, spec, job_key_mode=job_key_mode, schema=self.schema)

    async def add_jobs(self, specs: Sequence[JobSpec], *, job_key_preserve_run_at: bool = False) -> list[Job]:
        """Enqueue several jobs at once (jobs a before_schedule interceptor dropped are left out)."""
        if self.transform is not None:
            specs = [kept for spec in specs if (kept := self.transform(spec)) is not None]
            if not specs:
                return []
        return await add_jobs(self.pool, specs, job_key_preserve_run_at=job_key_preserve_run_at, schema=self.schema)


def job_logger(base: logging.Logger, job: Job, worker_id: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose records carry the job's id, task and attempt (never its payload)."""
    return logging.LoggerAdapter(
        base,
        {
            "job_id": job.id,
            "task": job.task_identifier,
            "attempt": job.attempts,
            "queue": job.queue_name,
            "worker_id": worker_id,
        },
    )
