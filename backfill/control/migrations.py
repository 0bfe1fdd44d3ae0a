"""The operator controls' own migration line, ``"control"``: the pauses and cancellations tables."""

from __future__ import annotations

from backfill.core import SchemaName
from backfill.core.extension import ConnectionSource, MigrationLine, OwnMigration

CONTROL_LINE = "control"
CONTROL_MIGRATIONS: tuple[OwnMigration, ...] = (
    OwnMigration(1, "pauses and cancellations", "control_001_tables.sql", package="backfill.control.sql"),
    # The admin API's audit trail and the runners' per-minute throughput (backfill/admin).
    OwnMigration(2, "audit and throughput", "control_002_audit_throughput.sql", package="backfill.control.sql"),
)
CONTROL_MIGRATION_LINE = MigrationLine(CONTROL_LINE, CONTROL_MIGRATIONS)


async def migrate_control(executor: ConnectionSource, schema: str | SchemaName | None = None) -> list[int]:
    """Create the pauses and cancellations tables in ``schema`` (Graphile's must exist); the ids applied here."""
    return await CONTROL_MIGRATION_LINE.apply(executor, SchemaName.coerce(schema))
