"""Everything a backfill deployment installs, in one call: Graphile's schema, then backfill's own lines.

The CLI's ``migrate``, ``BackfillClient.migrate()`` and a runner's start-up all need the same sequence: the
core line (worker registry, recovery counts, error history), the dead-letter line (unless the runner has the
dead-letter queue off) and the task catalog line. Each step is idempotent and safe to race (see
:mod:`backfill.core.migrations.own`).
"""

from __future__ import annotations

import logging

from backfill.core.db import ConnectionSource, connection_from
from backfill.core.migrations.graphile import MigrationReport, migrate
from backfill.core.migrations.own import CORE_LINE, migrate_own
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.dlq.migrations import DLQ_LINE, migrate_dlq
from backfill.tasks.catalog import TASKS_LINE, migrate_task_catalog

logger = logging.getLogger("backfill.migrate")


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
    applied = [f"{CORE_LINE}/{n}" for n in await migrate_own(executor, schema)]
    if dlq:
        applied += [f"{DLQ_LINE}/{n}" for n in await migrate_dlq(executor, schema)]
    applied += [f"{TASKS_LINE}/{n}" for n in await migrate_task_catalog(executor, schema)]
    return report, applied


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
