"""backfill's own tables: installed beside Graphile's, tracked apart from Graphile's ``migrations``.

Graphile's ``migrations`` table belongs to Graphile (a Node migrator reads it and refuses revisions it does not
know as breaking), so backfill's tables (``backfill_*``, in the same schema) are tracked in
``backfill_migrations``, keyed by ``(line, id)``. A *line* is an independent, numbered sequence of
migrations: the core line ("core") holds the worker registry and the recovery counts, and a later feature
can start its own line (e.g. "dlq") without renumbering anyone else's. Each is a :class:`MigrationLine`; the
core installs :data:`CORE_LINES`, and the layer's installers walk ``backfill.migrations.OWN_LINES``, which
lists every line, the core's first.

Call :func:`migrate_own` after Graphile's schema exists (installed by :func:`backfill.core.migrations.graphile.migrate`
or by Node); it needs nothing of Graphile's but the schema. It is idempotent and safe to race: each migration
runs in its own transaction under an advisory lock and checks again, once it holds the lock, whether
someone else applied it meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from backfill.core.catalog import table_exists
from backfill.core.db import ConnectionSource, Executor, connection_from
from backfill.core.errors import ConfigurationError, MigrationError
from backfill.core.migrations import sql
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements

logger = logging.getLogger("backfill.migrate")

# The first key of every advisory lock backfill takes in the two-int form, pg_advisory_*lock(int, int):
# the bytes "bkfl". PostgreSQL keeps two-int keys apart from single-bigint keys (pg_locks.objsubid 2 vs 1),
# so these cannot collide with Graphile's or with backfill's own bigint locks (see migrate.py); the class id
# keeps them apart from other applications' two-int locks. The second key names what is locked in which
# schema: hashtext(schema) for migrations, hashtext(schema || ':sweep') for the sweeper.
ADVISORY_LOCK_CLASS = 1651205740

CORE_LINE = "core"
TRACKING_TABLE = "backfill_migrations"


class OwnMigrationSql(Statements, file=("backfill.core.sql", "own_migrations.sql")):
    """The tracking of backfill's migration lines (see own_migrations.sql)."""

    schema_exists: str
    applied_ids: str
    lock_migrations: str
    create_tracking_table: str
    is_applied: str
    record_applied: str


@dataclass(frozen=True, slots=True)
class OwnMigration:
    """One step of a migration line: ``sql_file``, read from the package ``package`` with ``@schema@`` spliced in.

    ``package`` is a dotted name, so that a line of the layer above (``backfill.dlq.sql``) ships its SQL beside
    its code while the core imports nothing of that layer: the package is only opened when the step runs.
    """

    id: int
    name: str
    sql_file: str
    package: str = sql.__name__

    def text(self, schema: SchemaName) -> str:
        """The statement(s) to run for ``schema``."""
        if self.package == sql.__name__:
            return sql.load(self.sql_file, schema)
        source = resources.files(self.package).joinpath(self.sql_file).read_text(encoding="utf-8")
        return source.replace(sql.SCHEMA_PLACEHOLDER, schema.quoted)


@dataclass(frozen=True, slots=True)
class MigrationLine:
    """A line: its name in ``backfill_migrations`` and its migrations."""

    name: str
    migrations: tuple[OwnMigration, ...]

    async def apply(self, executor: ConnectionSource, schema: SchemaName) -> list[int]:
        """Apply what is not applied yet (see :func:`migrate_own`); the ids applied here."""
        return await migrate_own(executor, schema, line=self.name, migrations=self.migrations)


CORE_MIGRATIONS: tuple[OwnMigration, ...] = (
    OwnMigration(1, "workers", "backfill_001_workers.sql"),
    OwnMigration(2, "job errors", "backfill_002_job_errors.sql"),
    OwnMigration(3, "error details", "backfill_003_error_details.sql"),
    OwnMigration(4, "worker lanes", "backfill_004_worker_lanes.sql"),
    OwnMigration(5, "job results", "backfill_005_job_results.sql"),
)
CORE_MIGRATION_LINE = MigrationLine(CORE_LINE, CORE_MIGRATIONS)
# The lines a core worker installs at start-up, and WorkerUtils.migrate(). Every installer of the layer
# applies these first, then the layer's own (backfill.migrations.OWN_LINES lists them all).
CORE_LINES: tuple[MigrationLine, ...] = (CORE_MIGRATION_LINE,)


async def migrate_lines(executor: ConnectionSource, schema: SchemaName, lines: Sequence[MigrationLine]) -> list[str]:
    """Apply ``lines`` one after the other; the migrations applied here, as ``line/id`` (``core/2``)."""
    applied: list[str] = []
    for line in lines:
        applied += [f"{line.name}/{migration_id}" for migration_id in await line.apply(executor, schema)]
    return applied


async def migrate_own(
    executor: ConnectionSource,
    schema: SchemaName,
    *,
    line: str = CORE_LINE,
    migrations: Sequence[OwnMigration] = CORE_MIGRATIONS,
) -> list[int]:
    """Apply the migrations of ``line`` that are not applied yet, in id order; return the ids applied here.

    ``executor`` is a pool or a connection; a connection must not be inside a transaction, because each
    migration commits on its own (a failure later in the line keeps the earlier ones).
    """
    ordered = _validated(line, migrations)
    async with connection_from(executor) as connection:
        if connection.is_in_transaction():
            raise MigrationError("migrate_own() needs a connection outside any transaction: each migration commits")
        try:
            exists = await connection.fetchval(OwnMigrationSql.for_schema(schema).schema_exists, schema.name)
            if not exists:
                raise MigrationError(
                    f"schema {schema} does not exist; install Graphile's schema (migrate) before backfill's own"
                )
            # A cheap look without the lock first: on every start but the first, everything is applied and
            # workers starting together need not queue up behind each other's lock.
            done = await _applied_ids(connection, schema, line)
            applied: list[int] = []
            for migration in ordered:
                if migration.id in done:
                    continue
                if await _apply(connection, schema, line, migration):
                    applied.append(migration.id)
            return applied
        except asyncpg.PostgresError as error:
            raise MigrationError(
                f"applying backfill's {line!r} migrations to schema {schema} failed: {error}"
            ) from error


def _validated(line: str, migrations: Sequence[OwnMigration]) -> list[OwnMigration]:
    if not line:
        raise ConfigurationError("a migration line needs a name")
    ordered = sorted(migrations, key=lambda migration: migration.id)
    ids = [migration.id for migration in ordered]
    if len(set(ids)) != len(ids) or any(migration_id < 1 for migration_id in ids):
        raise ConfigurationError(f"migration line {line!r} needs distinct positive ids, got {ids}")
    return ordered


async def _applied_ids(connection: Executor, schema: SchemaName, line: str) -> set[int]:
    if not await table_exists(connection, schema, TRACKING_TABLE):
        return set()
    rows = await connection.fetch(OwnMigrationSql.for_schema(schema).applied_ids, line)
    return {int(row["id"]) for row in rows}


async def _apply(connection: Executor, schema: SchemaName, line: str, migration: OwnMigration) -> bool:
    """Apply one migration in its own transaction; ``False`` if another migrator had already applied it."""
    statements = OwnMigrationSql.for_schema(schema)
    async with connection.transaction():
        await connection.execute(statements.lock_migrations, ADVISORY_LOCK_CLASS, schema.name)
        await connection.execute(statements.create_tracking_table)
        if await connection.fetchval(statements.is_applied, line, migration.id):
            return False
        await connection.execute(migration.text(schema))
        await connection.execute(statements.record_applied, line, migration.id, migration.name)
    logger.info("applied backfill migration %s/%s (%s) to schema %s", line, migration.id, migration.name, schema)
    return True
