"""backfill: a PostgreSQL job queue for Python services that shares its database with Graphile Worker.

The backfill layer (client, priorities, lanes, retry policies, dead-letter queue, metrics, runner) is
re-exported here together with the core names most code needs; everything of the core is in
:mod:`backfill.core`.
"""

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.default import close_default_client, enqueue, enqueue_bulk, enqueue_critical, enqueue_fast
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
from backfill.core.errors import CallTimeoutError
from backfill.dlq import DeadLetterFilter, DeadLetterQueue
from backfill.lanes.lane import Lane
from backfill.logs import configure_logging
from backfill.metrics import BackfillMetrics
from backfill.priorities import Priority
from backfill.runner.worker_runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.defaults import task
from backfill.tasks.retry_policies import ErrorRules, RetryPolicy

__version__ = "0.1.0"

__all__ = [
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
    "JobInfo",
    "JobKeyMode",
    "JobResult",
    "JobSpec",
    "JobSpecError",
    "JobState",
    "JobTimeoutError",
    "Lane",
    "MigrationError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermanentFailure",
    "Priority",
    "RetryAfter",
    "RetryPolicy",
    "RunSummary",
    "Skip",
    "SyncBackfillClient",
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
