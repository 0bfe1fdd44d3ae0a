"""backfill: a PostgreSQL job queue for Python services that shares its database with Graphile Worker.

The backfill layer (client, priorities, lanes, retry policies, dead-letter queue, metrics, runner) is
re-exported here together with the core names most code needs; everything of the core is in
:mod:`backfill.core`.

The names are imported on first use (PEP 562), not when this package is: ``import backfill.core`` runs this
file first, and a process that uses only the core must not pay for, or even have installed, what the layer
needs (pydantic, pydantic-settings, prometheus_client, structlog, tenacity). ``backfill.Worker`` and the rest
behave exactly as eagerly imported names, and the ``TYPE_CHECKING`` imports show them to type checkers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill.client.async_client import BackfillClient, Enqueue
    from backfill.client.default import (
        close_default_client,
        enqueue,
        enqueue_bulk,
        enqueue_critical,
        enqueue_fast,
    )
    from backfill.client.sync_client import SyncBackfillClient
    from backfill.core import (
        BackfillError,
        BatchJobError,
        ConfigurationError,
        CronItem,
        DatabaseError,
        Events,
        Fail,
        Hooks,
        IncompatibleSchemaError,
        Job,
        JobContext,
        JobFailedError,
        JobInfo,
        JobKeyMode,
        JobResult,
        JobSpec,
        JobSpecError,
        JobState,
        JobTimeoutError,
        MigrationError,
        PayloadTooLargeError,
        PayloadValidationError,
        PermanentFailure,
        ResultTimeoutError,
        ResultUnavailableError,
        RetryAfter,
        RunSummary,
        Skip,
        TaskControl,
        TaskDefinitionError,
        TaskRegistry,
        Worker,
        WorkerOptions,
        WorkerUtils,
        add_job,
        add_jobs,
        migrate,
        parse_crontab,
    )
    from backfill.core.extension import CallTimeoutError
    from backfill.dlq import DeadLetterFilter, DeadLetterQueue
    from backfill.lanes.lane import Lane
    from backfill.logs import configure_logging
    from backfill.metrics import BackfillMetrics
    from backfill.priorities import Priority
    from backfill.results import JobOutcome, OutcomeState
    from backfill.runner.worker_runner import WorkerRunner
    from backfill.settings import BackfillSettings
    from backfill.tasks.defaults import task
    from backfill.tasks.handles import AsyncTask, Task
    from backfill.tasks.retry_policies import ErrorRules, RetryPolicy

__version__ = "0.1.0"

# Where each name is imported from: the same modules and names as the TYPE_CHECKING imports above (a test
# compares the two), written out so that reading it needs no import.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "backfill.client.async_client": ("BackfillClient", "Enqueue"),
    "backfill.client.default": (
        "close_default_client",
        "enqueue",
        "enqueue_bulk",
        "enqueue_critical",
        "enqueue_fast",
    ),
    "backfill.client.sync_client": ("SyncBackfillClient",),
    "backfill.core": (
        "BackfillError",
        "BatchJobError",
        "ConfigurationError",
        "CronItem",
        "DatabaseError",
        "Events",
        "Fail",
        "Hooks",
        "IncompatibleSchemaError",
        "Job",
        "JobContext",
        "JobFailedError",
        "JobInfo",
        "JobKeyMode",
        "JobResult",
        "JobSpec",
        "JobSpecError",
        "JobState",
        "JobTimeoutError",
        "MigrationError",
        "PayloadTooLargeError",
        "PayloadValidationError",
        "PermanentFailure",
        "ResultTimeoutError",
        "ResultUnavailableError",
        "RetryAfter",
        "RunSummary",
        "Skip",
        "TaskControl",
        "TaskDefinitionError",
        "TaskRegistry",
        "Worker",
        "WorkerOptions",
        "WorkerUtils",
        "add_job",
        "add_jobs",
        "migrate",
        "parse_crontab",
    ),
    "backfill.core.extension": ("CallTimeoutError",),
    "backfill.dlq": ("DeadLetterFilter", "DeadLetterQueue"),
    "backfill.lanes.lane": ("Lane",),
    "backfill.logs": ("configure_logging",),
    "backfill.metrics": ("BackfillMetrics",),
    "backfill.priorities": ("Priority",),
    "backfill.results": ("JobOutcome", "OutcomeState"),
    "backfill.runner.worker_runner": ("WorkerRunner",),
    "backfill.settings": ("BackfillSettings",),
    "backfill.tasks.defaults": ("task",),
    "backfill.tasks.handles": ("AsyncTask", "Task"),
    "backfill.tasks.retry_policies": ("ErrorRules", "RetryPolicy"),
}
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}

# Subpackages an eager import of this file used to bind as attributes (``backfill.dlq`` after a bare
# ``import backfill``); they still resolve, imported when first named.
_SUBMODULES = frozenset(
    {
        "client",
        "core",
        "dlq",
        "lanes",
        "logs",
        "metrics",
        "migrations",
        "priorities",
        "results",
        "runner",
        "settings",
        "tasks",
        "testing",
    }
)

__all__ = [
    "AsyncTask",
    "BackfillClient",
    "BackfillError",
    "BackfillMetrics",
    "BackfillSettings",
    "BatchJobError",
    "CallTimeoutError",
    "ConfigurationError",
    "CronItem",
    "DatabaseError",
    "DeadLetterFilter",
    "DeadLetterQueue",
    "Enqueue",
    "ErrorRules",
    "Events",
    "Fail",
    "Hooks",
    "IncompatibleSchemaError",
    "Job",
    "JobContext",
    "JobFailedError",
    "JobInfo",
    "JobKeyMode",
    "JobOutcome",
    "JobResult",
    "JobSpec",
    "JobSpecError",
    "JobState",
    "JobTimeoutError",
    "Lane",
    "MigrationError",
    "OutcomeState",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermanentFailure",
    "Priority",
    "ResultTimeoutError",
    "ResultUnavailableError",
    "RetryAfter",
    "RetryPolicy",
    "RunSummary",
    "Skip",
    "SyncBackfillClient",
    "Task",
    "TaskControl",
    "TaskDefinitionError",
    "TaskRegistry",
    "Worker",
    "WorkerOptions",
    "WorkerRunner",
    "WorkerUtils",
    "__version__",
    "add_job",
    "add_jobs",
    "close_default_client",
    "configure_logging",
    "enqueue",
    "enqueue_bulk",
    "enqueue_critical",
    "enqueue_fast",
    "migrate",
    "parse_crontab",
    "task",
]


# Hidden from type checkers, which see the TYPE_CHECKING imports instead: a module __getattr__ would make every
# misspelt ``backfill.X`` type-check as Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is not None:
            value = getattr(importlib.import_module(home), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        # Kept as a plain attribute: later lookups do not come back here.
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)
