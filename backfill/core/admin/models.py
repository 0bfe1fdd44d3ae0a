"""What the job utilities report: a job's derived state, job details, queue, task and worker figures.

Values only, no SQL: :mod:`backfill.core.admin.queries` reads them and :mod:`backfill.core.admin.utils` hands them
out. Every type is immutable and built from a database row by ``from_record``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from backfill.core.flags import parse_flags
from backfill.core.jobs import decode_json


class JobState(StrEnum):
    """Where a job stands, derived from its row. Every job is in exactly one state.

    The rules are checked in this order (the first that holds wins):

    ``running``
        ``locked_at is not null``: a worker holds it (or held it and died; the lock is kept until a sweep or
        Graphile's 4-hour expiry).
    ``failed``
        ``attempts >= max_attempts``: no worker will pick it up again (permanently failed).
    ``retrying``
        ``attempts > 0 and last_error is not null``: it failed at least once and will be tried again at
        ``run_at`` (in the future while backing off, in the past once due).
    ``scheduled``
        ``run_at > now()``: never failed, not due yet.
    ``waiting``
        everything else: never failed, due (``run_at <= now()``) and not locked, so it runs as soon as a
        worker for its task is free (and, for a named queue, the queue is not locked).
    """

    WAITING = "waiting"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobInfo:
    """Every column of a ``_private_jobs`` row, its task identifier and queue name, and its :class:`JobState`."""

    id: int
    task_identifier: str
    queue_name: str | None
    state: JobState
    payload: Any
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: frozenset[str]
    task_id: int
    job_queue_id: int | None
    is_available: bool
    # The type of the exception that failed its last attempt ("KeyError"), from backfill's error history;
    # None when it never failed, or when a Node worker (or a person) failed it last.
    exception_type: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> JobInfo:
        """Build from a row holding the job columns plus ``task_identifier``, ``queue_name`` and ``state``.

        ``payload`` and ``flags`` may come as text (the queries cast them, so no JSON codec is needed) or
        already decoded.
        """
        return cls(
            id=record["id"],
            task_identifier=record["task_identifier"],
            queue_name=record["queue_name"],
            state=JobState(record["state"]),
            payload=decode_json(record["payload"]),
            priority=record["priority"],
            run_at=record["run_at"],
            attempts=record["attempts"],
            max_attempts=record["max_attempts"],
            last_error=record["last_error"],
            created_at=record["created_at"],
            updated_at=record["updated_at"],
            key=record["key"],
            locked_at=record["locked_at"],
            locked_by=record["locked_by"],
            revision=record["revision"],
            flags=parse_flags(record["flags"]),
            task_id=record["task_id"],
            job_queue_id=record["job_queue_id"],
            is_available=record["is_available"],
            exception_type=record.get("exception_type"),
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One named queue: its jobs by state, who holds its lock, and how long its oldest waiting job has waited.

    ``waiting`` and ``running`` count jobs in those :class:`JobState` states; ``oldest_waiting_age`` is how
    long ago the oldest waiting job became due (``now() - run_at``), ``None`` when none waits.
    """

    queue_name: str
    total: int
    waiting: int
    running: int
    locked_by: str | None
    locked_at: datetime | None
    oldest_waiting_age: timedelta | None

    @property
    def locked(self) -> bool:
        return self.locked_at is not None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> QueueStats:
        return cls(
            queue_name=record["queue_name"],
            total=record["total"],
            waiting=record["waiting"],
            running=record["running"],
            locked_by=record["locked_by"],
            locked_at=record["locked_at"],
            oldest_waiting_age=record["oldest_waiting_age"],
        )


@dataclass(frozen=True, slots=True)
class TaskStats:
    """One task identifier and how many of its jobs are in each :class:`JobState`."""

    task_identifier: str
    waiting: int
    scheduled: int
    running: int
    retrying: int
    failed: int

    @property
    def total(self) -> int:
        return self.waiting + self.scheduled + self.running + self.retrying + self.failed

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TaskStats:
        return cls(
            task_identifier=record["task_identifier"],
            waiting=record["waiting"],
            scheduled=record["scheduled"],
            running=record["running"],
            retrying=record["retrying"],
            failed=record["failed"],
        )


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker known to the database: registered in ``backfill_workers``, holding locks, or both.

    A lock owner that never registered (a Node worker, or a backfill worker from before the registry) has
    ``registered=False``, ``alive=None`` (nothing says whether it lives) and ``None`` registration fields.
    A registered worker is ``alive`` while ``last_heartbeat_at + dead_after >= now()``.
    """

    worker_id: str
    registered: bool
    alive: bool | None
    locked_jobs: int
    locked_queues: int
    hostname: str | None = None
    pid: int | None = None
    started_at: datetime | None = None
    last_heartbeat_at: datetime | None = None
    dead_after: timedelta | None = None
    concurrency: int | None = None
    tasks: tuple[str, ...] = ()
    version: str | None = None
    lane: str | None = None  # the label the worker registered with (its lane, for a runner's workers)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> WorkerInfo:
        return cls(
            worker_id=record["worker_id"],
            registered=record["registered"],
            alive=record["alive"],
            locked_jobs=record["locked_jobs"],
            locked_queues=record["locked_queues"],
            hostname=record["hostname"],
            pid=record["pid"],
            started_at=record["started_at"],
            last_heartbeat_at=record["last_heartbeat_at"],
            dead_after=record["dead_after"],
            concurrency=record["concurrency"],
            tasks=tuple(record["tasks"] or ()),
            version=record["version"],
            lane=record["lane"],
        )


@dataclass(frozen=True, slots=True)
class CleanupReport:
    """What :meth:`backfill.core.admin.utils.WorkerUtils.cleanup` ran and how many rows each task deleted."""

    tasks: tuple[str, ...]
    deleted_permafailed_jobs: int = 0
    deleted_task_identifiers: int = 0
    deleted_job_queues: int = 0
