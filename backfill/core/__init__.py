"""backfill.core: a Graphile-Worker-compatible job queue core (schema revision 20).

Imports only the standard library, asyncpg, croniter and itself; the convenience layer builds on this.
"""

from backfill.core.context import JobContext
from backfill.core.enqueue import add_job, add_jobs
from backfill.core.errors import (
    BackfillError,
    ConfigurationError,
    DatabaseError,
    IncompatibleSchemaError,
    JobSpecError,
    MigrationError,
    PayloadValidationError,
    PermanentFailure,
    TaskControl,
    TaskDefinitionError,
)
from backfill.core.jobs import Job, JobKeyMode, JobSpec
from backfill.core.migrate import LATEST_REVISION, MigrationReport, current_revision, migrate
from backfill.core.options import RunSummary, WorkerOptions
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskDefinition, TaskRegistry, default_registry, task
from backfill.core.worker import Worker

__all__ = [  # noqa: RUF022 - plain sorted order, checked by tests/unit/test_public_api.py
    "BackfillError",
    "ConfigurationError",
    "DatabaseError",
    "IncompatibleSchemaError",
    "Job",
    "JobContext",
    "JobKeyMode",
    "JobSpec",
    "JobSpecError",
    "LATEST_REVISION",
    "MigrationError",
    "MigrationReport",
    "PayloadValidationError",
    "PermanentFailure",
    "RunSummary",
    "SchemaName",
    "TaskControl",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskRegistry",
    "Worker",
    "WorkerOptions",
    "add_job",
    "add_jobs",
    "current_revision",
    "default_registry",
    "migrate",
    "task",
]
