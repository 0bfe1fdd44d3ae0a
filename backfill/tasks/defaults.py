"""Per-task defaults of the backfill layer: priority, serial queue, lane, retry policy and result retention.

``@backfill.task("send_email", priority=Priority.FAST_DEFAULT, retry_policy="fast")`` registers the handler
with the core (like ``backfill.core.task``, validating dataclass and TypedDict payloads too), returns its
handle (:mod:`backfill.tasks.handles`: ``await send_email.enqueue(Email(...))``) and records these defaults,
which the client applies when it enqueues that task in the same process, and which a worker applies to jobs of
the task that carry no policy of their own (enqueued by Node or SQL). A caller's explicit argument always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from backfill.core import ConfigurationError, JobSpecError, TaskDefinitionError, TaskRegistry, default_registry
from backfill.core.extension import Handler, check_int, check_retention
from backfill.lanes.lane import check_lane_name
from backfill.tasks.handles import Task, TaskDecorator, handle_of
from backfill.tasks.payloads import register_task
from backfill.tasks.retry_policies import RetryPolicy, resolve_policy


@dataclass(frozen=True, slots=True)
class TaskDefaults:
    """What a task's jobs get when the enqueuer does not say otherwise (``None``: the client's default)."""

    priority: int | None = None
    queue: str | None = None
    lane: str | None = None
    retry_policy: RetryPolicy | None = None
    keep_result: float | None = None  # seconds each job's outcome is kept (backfill:result=<seconds>)


# identifier -> defaults, for tasks registered through backfill.task (any registry).
TASK_DEFAULTS: dict[str, TaskDefaults] = {}


def task(
    identifier: str,
    *,
    payload_model: type[Any] | None = None,
    timeout: float | None = None,
    priority: int | None = None,
    queue: str | None = None,
    lane: str | None = None,
    retry_policy: RetryPolicy | str | None = None,
    keep_result: float | timedelta | None = None,
    registry: TaskRegistry | None = None,
) -> TaskDecorator:
    """Register the decorated function as the handler of ``identifier`` (in ``registry``, by default the
    core's default registry) with the layer's defaults for its jobs, and return its handle
    (:class:`~backfill.tasks.handles.Task`): called, it calls the function; ``await handle.enqueue(payload)``
    enqueues a job, with the payload's type checked by mypy against the handler's first parameter.

    The payload type is ``payload_model`` if given, else the first parameter's annotation: a pydantic model, a
    dataclass, a ``TypedDict`` (from ``typing_extensions`` before Python 3.12), or anything else pydantic's
    ``TypeAdapter`` validates, checked at enqueue in this process and by the worker before the handler runs,
    which then receives the validated value. ``dict[str, Any]``, ``list``, ``Any`` or no annotation: no
    validation (see :mod:`backfill.core.tasks`). A type pydantic cannot validate is refused here with
    :class:`~backfill.core.TaskDefinitionError`. See the module docstring for the defaults."""
    try:
        check_int("priority", priority, optional=True, error=JobSpecError)
        defaults = TaskDefaults(
            priority=priority,
            queue=queue,
            lane=check_lane_name(lane) if lane is not None else None,
            retry_policy=resolve_policy(retry_policy) if retry_policy is not None else None,
            keep_result=check_retention("keep_result", keep_result) if keep_result is not None else None,
        )
    except (JobSpecError, ConfigurationError) as error:
        raise TaskDefinitionError(f"task {identifier!r}: {error}") from None
    target = registry if registry is not None else default_registry

    def decorate(handler: Handler) -> Task[Any, Any]:
        definition = register_task(
            target, identifier, handler, payload_model=payload_model, timeout=timeout, keep_result=defaults.keep_result
        )
        if defaults != TaskDefaults():
            TASK_DEFAULTS[identifier] = defaults
        return handle_of(definition, handler)

    return cast(TaskDecorator, decorate)  # decorate's precise type is TaskDecorator's overloads


def defaults_for(identifier: str) -> TaskDefaults | None:
    return TASK_DEFAULTS.get(identifier)


def task_policy(identifier: str) -> RetryPolicy | None:
    """The retry policy ``identifier`` declared, for the worker's planner."""
    defaults = TASK_DEFAULTS.get(identifier)
    return defaults.retry_policy if defaults is not None else None
