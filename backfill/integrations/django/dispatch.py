"""Django tasks as backfill task handlers: what a worker runs for a job of a Django task.

Each handler decodes the job's ``{"args", "kwargs"}``, calls the task's function and returns its value (kept as
the job's outcome). Around the call it does what Django does around a request, so that the task's database
connections behave as a view's would:

* a plain ``def`` runs in one of backfill's worker threads (as any synchronous handler): Django's connections
  are per thread, and ``close_old_connections()`` before and after each job closes those that are broken or
  past ``CONN_MAX_AGE`` — with the default ``CONN_MAX_AGE = 0``, each job's connection is closed after it;
* an ``async def`` runs on the worker's event loop; Django runs its ORM calls (``await Model.objects.aget``)
  in one thread of its own, where ``close_old_connections()`` runs too.

Django's ``task_started`` signal is sent for each attempt, ``task_finished`` once the job has ended: after an
attempt that succeeded, or that failed with no attempt left (``FAILED``). An attempt that backfill will retry
sends no ``task_finished``: the task has not finished, and ``get_result`` reports it ``READY`` again.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from backfill.core import JobContext, JobSpecError, PermanentFailure, TaskRegistry
from backfill.integrations.django.compat import (
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    status,
    task_finished,
    task_started,
)
from backfill.integrations.django.translate import decode_arguments


def registry_for(tasks: Iterable[Task[Any, Any]], *, keep_result: float | None = None) -> TaskRegistry:
    """A registry with one backfill task per Django task, named by its module path. ``keep_result`` is
    declared on each, so that jobs enqueued by other means (SQL, Node) keep their outcome too."""
    registry = TaskRegistry()
    for task in tasks:
        registry.register(task.module_path, handler_for(task), keep_result=keep_result)
    return registry


def handler_for(task: Task[Any, Any]) -> Callable[[Any, JobContext], Any]:
    """The backfill handler that runs ``task``: async for a coroutine function, a plain function otherwise."""
    if inspect.iscoroutinefunction(task.func):

        async def run_async(payload: Any, ctx: JobContext) -> Any:
            args, kwargs = _arguments(payload)
            await sync_to_async(close_old_connections)()
            result = _started(task, ctx, args, kwargs)
            try:
                value = await _call(task, result, args, kwargs)
            except BaseException as error:
                _failed(result, error, last=ctx.is_last_attempt)
                raise
            finally:
                await sync_to_async(close_old_connections)()
            return _finished(result, value)

        return run_async

    def run(payload: Any, ctx: JobContext) -> Any:
        args, kwargs = _arguments(payload)
        close_old_connections()
        result = _started(task, ctx, args, kwargs)
        try:
            value = _call(task, result, args, kwargs)
        except BaseException as error:
            _failed(result, error, last=ctx.is_last_attempt)
            raise
        finally:
            close_old_connections()
        return _finished(result, value)

    return run


def _arguments(payload: Any) -> tuple[list[Any], dict[str, Any]]:
    try:
        return decode_arguments(payload)
    except JobSpecError as error:  # a job written by other means than the backend: retrying cannot help
        raise PermanentFailure(str(error)) from None


def _call(task: Task[Any, Any], result: TaskResult[Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    function: Callable[..., Any] = task.func
    if task.takes_context:
        return function(TaskContext(task_result=result), *args, **kwargs)
    return function(*args, **kwargs)


def _started(task: Task[Any, Any], ctx: JobContext, args: list[Any], kwargs: dict[str, Any]) -> TaskResult[Any]:
    """The running attempt as a TaskResult: what a task taking ``context`` receives, and the signals carry."""
    now = timezone.now()
    job = ctx.job
    worker_ids = [""] * max(job.attempts - 1, 0) + [ctx.worker_id]  # TaskContext.attempt counts these
    result: TaskResult[Any] = TaskResult(
        task=task,
        id=str(job.id),
        status=status("RUNNING"),
        enqueued_at=_as_django_time(job.created_at),
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=args,
        kwargs=kwargs,
        backend=task.backend,
        errors=[],
        worker_ids=worker_ids,
    )
    task_started.send(sender=type(task.get_backend()), task_result=result)
    return result


def _finished(result: TaskResult[Any], value: Any) -> Any:
    object.__setattr__(result, "status", status("SUCCESSFUL"))
    object.__setattr__(result, "finished_at", timezone.now())
    object.__setattr__(result, "_return_value", value)
    task_finished.send(sender=type(result.task.get_backend()), task_result=result)
    return value


def _failed(result: TaskResult[Any], error: BaseException, *, last: bool) -> None:
    if not last:
        return
    kind = type(error)
    path = f"{kind.__module__}.{kind.__qualname__}"
    result.errors.append(TaskError(exception_class_path=path, traceback="".join(traceback.format_exception(error))))
    object.__setattr__(result, "status", status("FAILED"))
    object.__setattr__(result, "finished_at", timezone.now())
    task_finished.send(sender=type(result.task.get_backend()), task_result=result)


def _as_django_time(value: datetime) -> datetime:
    # asyncpg gives aware datetimes; a project with USE_TZ = False works with naive ones, in its TIME_ZONE.
    return value if settings.USE_TZ else timezone.make_naive(value)
