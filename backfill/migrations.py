"""Everything a backfill deployment installs, in one call: Graphile's schema, then backfill's own lines.

The CLI's ``migrate``, ``BackfillClient.migrate()`` and a runner's start-up all need the same sequence: the
core line (worker registry, recovery counts, error history), the dead-letter line (unless the runner has the
dead-letter queue off), the task catalog line and the operator controls' line, all listed once in
:data:`OWN_LINES`. Each step is idempotent and safe to race (see :mod:`backfill.core.migrations.own`).
"""

from __future__ import annotations

import logging

from backfill.control.migrations import CONTROL_MIGRATION_LINE
from backfill.core import MigrationReport, SchemaName, migrate
from backfill.core.extension import (
    CORE_LINES,
    ConnectionSource,
    MigrationLine,
    Statements,
    connection_from,
    migrate_lines,
)
from backfill.dlq.migrations import DLQ_MIGRATION_LINE
from backfill.tasks.catalog import TASKS_MIGRATION_LINE

logger = logging.getLogger("backfill.migrate")

# Every migration line of backfill's own, in the order they are installed: the one list every installer of
# the layer walks, so that a new line cannot be left out of one of them (a test finds any line missing here).
OWN_LINES: tuple[MigrationLine, ...] = (*CORE_LINES, DLQ_MIGRATION_LINE, TASKS_MIGRATION_LINE, CONTROL_MIGRATION_LINE)


class MigrateAllSql(Statements, file=("backfill.sql", "migrations.sql")):
    """The look-up for other queues in the database."""

    other_queues: str


async def migrate_all(
    executor: ConnectionSource, schema: SchemaName, *, dlq: bool = True
) -> tuple[MigrationReport, list[str]]:
    """Bring ``schema`` to Graphile's revision 20, then apply backfill's own migration lines; Graphile's
    report and the own migrations applied here, as ``line/id`` (``core/2``, ``dlq/1`` …)."""
    report = await migrate(executor, schema)
    if report.installed_fresh:
        await _warn_about_other_queues(executor, schema)
    lines = [line for line in OWN_LINES if dlq or line is not DLQ_MIGRATION_LINE]
    return report, await migrate_lines(executor, schema, lines)


async def _warn_about_other_queues(executor: ConnectionSource, schema: SchemaName) -> None:
    """A schema installed from nothing while another schema of this database already holds a Graphile queue is
    usually a GRAPHILE_WORKER_SCHEMA typo: jobs enqueued into one are never seen by workers of the other."""
    async with connection_from(executor) as connection:
        others = await connection.fetch(MigrateAllSql.for_schema(schema).other_queues, schema.name)
    if others:
        logger.warning(
            "installed a new job queue in schema %s, but this database already has one in schema(s) %s: if "
            "GRAPHILE_WORKER_SCHEMA (or --schema) has a typo, jobs enqueued into one are never run by workers of "
            "the other",
            schema.name,
            ", ".join(row["name"] for row in others),
        )
