"""A backfill job as Django's ``TaskResult``: its live row while it is queued or running, its kept outcome after.

| backfill | Django ``status`` |
|---|---|
| row, not locked (waiting, scheduled, or retrying after a failed attempt) | ``READY`` |
| row, locked by a worker | ``RUNNING`` |
| outcome ``succeeded`` | ``SUCCESSFUL`` (``return_value`` is the kept value) |
| outcome ``failed``, or a row that failed for good | ``FAILED`` (``errors`` holds the last error) |
| outcome ``cancelled`` (``backfill jobs cancel``) | ``FAILED`` (the error is a ``JobFailedError``) |

The live row is read on the Django connection, in the caller's transaction: a job enqueued earlier in the same
``atomic`` block is found, though no other connection sees it yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils.module_loading import import_string

from backfill.core import SchemaName
from backfill.core.extension import Statements, dbapi_form
from backfill.integrations.django.compat import (
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    status,
)
from backfill.integrations.django.translate import decode_arguments, exception_class_path
from backfill.results.models import JobOutcome, OutcomeState

# What Django's TaskError names for a job an operator cancelled: backfill's error for a job that did not succeed.
CANCELLED_ERROR_PATH = "backfill.core.errors.JobFailedError"


@dataclass(frozen=True, slots=True)
class LiveJob:
    """The columns of a job's row that a TaskResult shows."""

    task_identifier: str
    payload: Any
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    locked_at: datetime | None
    locked_by: str | None

    @property
    def failed_for_good(self) -> bool:
        # No worker will take it again; its outcome (kept or not) says how it ended.
        return self.locked_at is None and self.attempts >= self.max_attempts


class DjangoSql(Statements, file=("backfill.integrations.django.sql", "django.sql")):
    """The backend's reads on Django's connection (see django.sql)."""

    live_job: str


def read_live_job(connection: Any, schema: SchemaName, job_id: int) -> LiveJob | None:
    """The row of job ``job_id`` through ``connection`` (a DB-API one), or ``None`` when there is none."""
    cursor = connection.cursor()
    try:
        cursor.execute(dbapi_form(DjangoSql.for_schema(schema).live_job), (job_id,))
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    identifier, payload, attempts, max_attempts, last_error, created_at, locked_at, locked_by = row
    return LiveJob(
        identifier, json.loads(payload), attempts, max_attempts, last_error, created_at, locked_at, locked_by
    )


def task_named(identifier: str, result_id: str) -> Task[Any, Any]:
    """The Django task a job's identifier names; :class:`TaskResultDoesNotExist` for a job of any other task."""
    try:
        found = import_string(identifier)
    except ImportError:
        found = None
    if not isinstance(found, Task):
        raise TaskResultDoesNotExist(f"job {result_id} is not a Django task's (task {identifier!r})")
    return found


def live_result(result_id: str, job: LiveJob, *, backend: str) -> TaskResult[Any]:
    """A job that is queued, retrying or running."""
    task = task_named(job.task_identifier, result_id)
    try:
        args, kwargs = decode_arguments(job.payload)
    except ValueError:  # enqueued by other means than this backend: show no arguments rather than fail
        args, kwargs = [], {}
    running = job.locked_at is not None
    return _result(
        task,
        result_id,
        state=status("RUNNING" if running else "READY"),
        enqueued_at=job.created_at,
        started_at=job.locked_at,
        finished_at=None,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=[_error(job.last_error)] if job.last_error else [],
        worker_ids=_worker_ids(job.attempts, job.locked_by),
    )


def finished_result(result_id: str, outcome: JobOutcome, *, backend: str) -> TaskResult[Any]:
    """A job that ended. Its arguments are gone with its row (backfill keeps the outcome, not the payload):
    ``args`` and ``kwargs`` are empty here, while the TaskResult that ``enqueue`` returned, refreshed, keeps
    them."""
    task = task_named(outcome.task_identifier, result_id)
    errors: list[TaskError] = []
    if outcome.state is OutcomeState.FAILED:
        errors.append(_error(outcome.error))
    elif outcome.state is OutcomeState.CANCELLED:
        reason = f"cancelled: {outcome.error}" if outcome.error else "cancelled"
        errors.append(TaskError(exception_class_path=CANCELLED_ERROR_PATH, traceback=reason))
    result = _result(
        task,
        result_id,
        state=status("SUCCESSFUL" if outcome.succeeded else "FAILED"),
        enqueued_at=outcome.created_at,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        args=[],
        kwargs={},
        backend=backend,
        errors=errors,
        worker_ids=_worker_ids(outcome.attempts, None),
    )
    if outcome.succeeded:
        # TaskResult is frozen and has no argument for it: Django's own backends set it this way too.
        object.__setattr__(result, "_return_value", outcome.value)
    return result


def _result(
    task: Task[Any, Any],
    result_id: str,
    *,
    state: TaskResultStatus,
    enqueued_at: datetime | None,
    started_at: datetime | None,
    finished_at: datetime | None,
    args: list[Any],
    kwargs: dict[str, Any],
    backend: str,
    errors: list[TaskError],
    worker_ids: list[str],
) -> TaskResult[Any]:
    return TaskResult(
        task=task,
        id=result_id,
        status=state,
        enqueued_at=enqueued_at,
        started_at=started_at,
        finished_at=finished_at,
        last_attempted_at=started_at,
        args=args,
        kwargs=kwargs,
        backend=backend,
        errors=errors,
        worker_ids=worker_ids,
    )


def _error(text: str | None) -> TaskError:
    # backfill keeps the last error's "Type: message", not a traceback (the dead-letter queue keeps those).
    return TaskError(exception_class_path=exception_class_path(text), traceback=text or "")


def _worker_ids(attempts: int, locked_by: str | None) -> list[str]:
    """One entry per attempt, so that ``TaskResult.attempts`` counts right. backfill records only the worker
    holding the job now (``locked_by``), the last entry; earlier ones are empty strings."""
    ids = [""] * attempts
    if locked_by is not None and ids:
        ids[-1] = locked_by
    return ids
