"""Everything a backfill deployment installs, in one call: Graphile's schema, then backfill's own lines.

The CLI's ``migrate``, ``BackfillClient.migrate()`` and a runner's start-up all need the same sequence: the
core line (worker registry, recovery counts, error history), the dead-letter line (unless the runner has the
dead-letter queue off) and the task catalog line. Each step is idempotent and safe to race (see
:mod:`backfill.core.own_migrations`).
"""

from __future__ import annotations

from backfill.core.db import ConnectionSource
from backfill.core.migrate import MigrationReport, migrate
from backfill.core.own_migrations import CORE_LINE, migrate_own
from backfill.core.schema import SchemaName
from backfill.dlq.migrations import DLQ_LINE, migrate_dlq
from backfill.task_catalog import TASKS_LINE, migrate_task_catalog


async def migrate_all(
    executor: ConnectionSource, schema: SchemaName, *, dlq: bool = True
) -> tuple[MigrationReport, list[str]]:
    """Bring ``schema`` to Graphile's revision 20, then apply backfill's own migration lines; Graphile's
    report and the own migrations applied here, as ``line/id`` (``core/2``, ``dlq/1`` …)."""
    report = await migrate(executor, schema)
    applied = [f"{CORE_LINE}/{n}" for n in await migrate_own(executor, schema)]
    if dlq:
        applied += [f"{DLQ_LINE}/{n}" for n in await migrate_dlq(executor, schema)]
    applied += [f"{TASKS_LINE}/{n}" for n in await migrate_task_catalog(executor, schema)]
    return report, applied
