"""Per-task defaults of the backfill layer: priority, serial queue, lane, retry policy and result retention.

``@backfill.task("send_email", priority=Priority.FAST_DEFAULT, retry_policy="fast")`` registers the handler
with the core (exactly like ``backfill.core.task``) and records these defaults, which the client applies when
it enqueues that task in the same process, and which a worker applies to jobs of the task that carry no
policy of their own (enqueued by Node or SQL). A caller's explicit argument always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from backfill.core import ConfigurationError, JobSpecError, TaskDefinitionError, TaskRegistry, default_registry
from backfill.core.extension import Handler, check_int, check_retention
from backfill.lanes.lane import check_lane_name
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
) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``identifier`` (in ``registry``, by default the
    core's default registry) with the layer's defaults for its jobs. See the module docstring."""
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

    def decorate(handler: Handler) -> Handler:
        target.register(
            identifier, handler, payload_model=payload_model, timeout=timeout, keep_result=defaults.keep_result
        )
        if defaults != TaskDefaults():
            TASK_DEFAULTS[identifier] = defaults
        return handler

    return decorate


def defaults_for(identifier: str) -> TaskDefaults | None:
    return TASK_DEFAULTS.get(identifier)


def task_policy(identifier: str) -> RetryPolicy | None:
    """The retry policy ``identifier`` declared, for the worker's planner."""
    defaults = TASK_DEFAULTS.get(identifier)
    return defaults.retry_policy if defaults is not None else None
