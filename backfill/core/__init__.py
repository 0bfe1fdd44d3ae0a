"""backfill.core: a Graphile-Worker-compatible job queue core (schema revision 20).

Imports only the standard library, asyncpg, croniter and itself; the convenience layer builds on this.
"""

from backfill.core.admin.models import CleanupReport, JobInfo, JobState, QueueStats, TaskStats, WorkerInfo
from backfill.core.admin.utils import WorkerUtils
from backfill.core.enqueue import add_job, add_jobs
from backfill.core.errors import (
    BackfillError,
    BatchJobError,
    ConfigurationError,
    DatabaseError,
    IncompatibleSchemaError,
    JobFailedError,
    JobSpecError,
    JobTimeoutError,
    MigrationError,
    PayloadTooLargeError,
    PayloadValidationError,
    PermanentFailure,
    ResultTimeoutError,
    ResultUnavailableError,
    RetryAfter,
    TaskControl,
    TaskDefinitionError,
)
from backfill.core.events import EVENT_NAMES, Event, Events
from backfill.core.hooks import Fail, Hooks, JobResult, RetryDecision, Skip
from backfill.core.jobs import Job, JobKeyMode, JobSpec
from backfill.core.migrations.graphile import LATEST_REVISION, MigrationReport, current_revision, migrate
from backfill.core.migrations.own import migrate_own
from backfill.core.run.context import JobContext
from backfill.core.run.job_slice import JobSlice
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.pause import FetchPause
from backfill.core.run.slots import CancelAnswer
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskDefinition, TaskRegistry, default_registry, task
from backfill.core.upkeep.crontab import CronItem, CrontabError, cron_item, load_crontab_file, parse_crontab
from backfill.core.upkeep.sweeper import SweepReport, sweep

__all__ = [  # noqa: RUF022 - plain sorted order, checked by tests/unit/test_public_api.py
    "BackfillError",
    "BatchJobError",
    "CancelAnswer",
    "CleanupReport",
    "ConfigurationError",
    "CronItem",
    "CrontabError",
    "DatabaseError",
    "EVENT_NAMES",
    "Event",
    "Events",
    "Fail",
    "FetchPause",
    "Hooks",
    "IncompatibleSchemaError",
    "Job",
    "JobContext",
    "JobFailedError",
    "JobInfo",
    "JobKeyMode",
    "JobResult",
    "JobSlice",
    "JobSpec",
    "JobSpecError",
    "JobState",
    "JobTimeoutError",
    "LATEST_REVISION",
    "LoopShare",
    "MigrationError",
    "MigrationReport",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PermanentFailure",
    "QueueStats",
    "ResultTimeoutError",
    "ResultUnavailableError",
    "RetryAfter",
    "RetryDecision",
    "RunSummary",
    "SchemaName",
    "Skip",
    "SweepReport",
    "TaskControl",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskRegistry",
    "TaskStats",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "WorkerUtils",
    "add_job",
    "add_jobs",
    "cron_item",
    "current_revision",
    "default_registry",
    "load_crontab_file",
    "migrate",
    "migrate_own",
    "parse_crontab",
    "sweep",
    "task",
]
