"""The one place that knows where Django's Tasks framework lives: ``django.tasks`` from Django 6, the
``django-tasks`` backport (``django_tasks``) before it. Both have the same names except the invalid-task error
(``InvalidTask`` in Django 6, ``InvalidTaskError`` in the backport); everything else imports from here.

The type checker reads the backport's annotations (the one installed for development); at run time Django 6's
module wins when it exists, so a project moving to Django 6 keeps the same backend without changing settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from django_tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
else:
    try:
        from django.tasks import (
            DEFAULT_TASK_QUEUE_NAME,
            Task,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task,
            task_backends,
        )
    except ImportError:  # Django before 6: the backport
        from django_tasks import (
            DEFAULT_TASK_QUEUE_NAME,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task,
            task_backends,
        )
        from django_tasks import exceptions as _exceptions
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskError  # the backport's package does not export Task
        from django_tasks.signals import task_enqueued, task_finished, task_started
    else:
        from django.tasks import exceptions as _exceptions
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import TaskError
        from django.tasks.signals import task_enqueued, task_finished, task_started

    TaskResultDoesNotExist = _exceptions.TaskResultDoesNotExist
    InvalidTaskError = getattr(_exceptions, "InvalidTask", None) or _exceptions.InvalidTaskError

__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "source",
    "status",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]


def status(name: Literal["READY", "RUNNING", "FAILED", "SUCCESSFUL"]) -> TaskResultStatus:
    """The ``TaskResultStatus`` member ``name``. (Without django-stubs' mypy plugin, a type checker sees the
    members of Django's ``TextChoices`` as the tuples that define them; looked up by name, they are typed.)"""
    member: TaskResultStatus = getattr(TaskResultStatus, name)
    return member


def source() -> str:
    """Which implementation is in use: ``django.tasks`` (Django 6) or ``django_tasks`` (the backport)."""
    return "django_tasks" if Task.__module__.startswith("django_tasks") else "django.tasks"
