"""The dead-letter queue's own migration line, ``"dlq"``, applied by :func:`migrate_dlq`.

A line of its own (see :mod:`backfill.core.migrations.own`): the core line never has to know the
dead-letter table exists, and ``sql/dlq_schema.sql`` records the same ``('dlq', 1)`` to ``('dlq', 3)`` rows
when a team applies the table with psql, so a process that later calls :func:`migrate_dlq` finds nothing to do.
"""

from __future__ import annotations

from backfill.core import SchemaName
from backfill.core.extension import ConnectionSource, MigrationLine, OwnMigration

DLQ_LINE = "dlq"
DLQ_TABLE = "backfill_dlq"

DLQ_MIGRATIONS: tuple[OwnMigration, ...] = (
    OwnMigration(1, "dead-letter table", "dlq_001_table.sql", package="backfill.dlq.sql"),
    OwnMigration(2, "error details", "dlq_002_error_details.sql", package="backfill.dlq.sql"),
    OwnMigration(3, "dead jobs index", "dlq_003_dead_jobs_index.sql", package="backfill.dlq.sql"),
)
DLQ_MIGRATION_LINE = MigrationLine(DLQ_LINE, DLQ_MIGRATIONS)


async def migrate_dlq(executor: ConnectionSource, schema: str | SchemaName | None = None) -> list[int]:
    """Create or upgrade the dead-letter table in ``schema`` (Graphile's must exist); the ids applied here."""
    return await DLQ_MIGRATION_LINE.apply(executor, SchemaName.coerce(schema))
