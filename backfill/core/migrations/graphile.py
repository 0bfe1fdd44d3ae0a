"""Install or upgrade the Graphile Worker schema to revision 20.

The protocol follows graphile-worker@0.18.0 so that Node and Python migrators can race safely:

* each revision is applied in its own transaction that first inserts its row into ``migrations``;
  a concurrent migrator that already did it makes that insert fail with a unique violation (23505),
  which means "someone else did it" — we roll back and look again;
* after the DDL, ``pg_notify('worker:migrate', '{"migrationNumber":N,"breaking":B}')`` tells running
  workers (Node shuts down on a breaking one); a fresh install sends a single non-breaking notice for
  revision 20 (see ``_install_fresh``);
* a breaking revision above ours is refused, a non-breaking one is tolerated with a warning.

An empty schema is installed in one transaction that writes all twenty ``migrations`` rows first. An
existing schema at revision 18 or 19 (left by a Node worker) is upgraded step by step; anything older has
to be brought to 18 by graphile-worker itself, since reproducing every historical revision here would be
code nobody runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

import asyncpg

from backfill.core.catalog import table_exists
from backfill.core.db import MIN_SERVER_VERSION_NUM, ConnectionSource, Executor, connection_from
from backfill.core.errors import IncompatibleSchemaError, MigrationError
from backfill.core.migrations import sql
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements

logger = logging.getLogger("backfill.migrate")

LATEST_REVISION = 20
BREAKING_REVISIONS = frozenset({1, 3, 11, 13, 14, 16, 19})
OLDEST_UPGRADABLE_REVISION = 18

# SQL applied when upgrading *to* a revision. 19 only marks the breaking jump from worker-centric to
# pool-centric workers; 20 changed add_job/add_jobs, and re-creating all functions is harmless.
_UPGRADE_FILES: dict[int, tuple[str, ...]] = {19: (), 20: ("functions.sql",)}

# While another process is midway through a fresh install we may see a revision below 18 for a moment;
# wait this long for it to finish before calling the schema too old.
_CONCURRENT_MIGRATION_WAIT_SECONDS = 30.0


class MigrateSql(Statements, file=("backfill.core.sql", "migrate.sql")):
    """Revision reads, locks and notices around the migrations (see migrate.sql)."""

    server_version: str
    current_revision: str
    read_revisions: str
    lock_schema_creation: str
    create_schema: str
    create_migrations_table: str
    insert_revisions: str
    notify_migrated: str


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What :func:`migrate` found and did."""

    schema: str
    from_revision: int | None
    to_revision: int
    applied: tuple[int, ...] = field(default=())

    @property
    def installed_fresh(self) -> bool:
        return self.from_revision is None and bool(self.applied)


async def migrate(source: ConnectionSource, schema: str | SchemaName | None = None) -> MigrationReport:
    """Bring ``schema`` (default: ``GRAPHILE_WORKER_SCHEMA`` or ``graphile_worker``) to revision 20.

    ``source`` is a pool or a connection; a connection must not be inside a transaction, because each
    revision commits on its own.
    """
    schema_name = SchemaName.coerce(schema)
    async with connection_from(source) as connection:
        if connection.is_in_transaction():
            raise MigrationError("migrate() needs a connection outside any transaction: each revision commits")
        try:
            await _check_server_version(connection, schema_name)
            # The common case, every start but the first: already current. Said with a read alone, so a role
            # with no CREATE privilege (workers run as an application role) can start once an owner migrated.
            revision = await current_revision(connection, schema_name)
            if revision == LATEST_REVISION:
                return MigrationReport(schema_name.name, revision, revision)
            await _ensure_migrations_table(connection, schema_name)
            return await _migrate_to_latest(connection, schema_name)
        except asyncpg.PostgresError as error:
            # E.g. a stray table in the schema, or a role without CREATE: callers catch one family.
            raise MigrationError(f"migrating schema {schema_name} failed: {error}") from error


async def current_revision(source: ConnectionSource, schema: str | SchemaName | None = None) -> int | None:
    """The highest revision in ``migrations``, or ``None`` when the schema is not installed."""
    schema_name = SchemaName.coerce(schema)
    async with connection_from(source) as connection:
        if not await table_exists(connection, schema_name, "migrations"):
            return None
        value = await connection.fetchval(MigrateSql.for_schema(schema_name).current_revision)
        return None if value is None else int(value)


async def _check_server_version(connection: Executor, schema: SchemaName) -> None:
    version_num = int(await connection.fetchval(MigrateSql.for_schema(schema).server_version))
    if version_num < MIN_SERVER_VERSION_NUM:
        raise MigrationError(f"PostgreSQL 12 or newer is required (server_version_num is {version_num})")


async def _ensure_migrations_table(connection: Executor, schema: SchemaName) -> None:
    """Create the schema and its ``migrations`` table if they are missing.

    ``if not exists`` is not race-free in PostgreSQL (two creators can both pass the check and one then
    hits a unique violation in the catalog), so backfill migrators serialise on an advisory lock, and a
    collision with a Node migrator is retried once it has committed.
    """
    statements = MigrateSql.for_schema(schema)
    for _ in range(3):
        try:
            async with connection.transaction():
                await connection.execute(statements.lock_schema_creation, schema.name)
                await connection.execute(statements.create_schema)
                await connection.execute(statements.create_migrations_table)
            return
        except asyncpg.UniqueViolationError:
            continue
    raise MigrationError(f"could not create {schema.quoted}.migrations: it kept colliding with another migrator")


async def _read_revisions(connection: Executor, schema: SchemaName) -> dict[int, bool]:
    rows = await connection.fetch(MigrateSql.for_schema(schema).read_revisions)
    return {int(row["id"]): bool(row["breaking"]) for row in rows}


async def _migrate_to_latest(connection: Executor, schema: SchemaName) -> MigrationReport:
    deadline = 0.0  # set on the first look, below
    start_revision: int | None = None
    first_look = True
    last_seen: int | None = None
    applied: list[int] = []
    while True:
        revisions = await _read_revisions(connection, schema)
        current = max(revisions, default=None)
        if first_look:
            start_revision, first_look = current, False
        _refuse_newer_breaking(revisions, schema)
        if current != last_seen:
            # Each step of another migrator restarts the wait: it bounds how long that migrator may go
            # quiet, not the total (time spent blocked on its locks must not count against it).
            deadline = time.monotonic() + _CONCURRENT_MIGRATION_WAIT_SECONDS
        last_seen = current
        if current is not None and current >= LATEST_REVISION:
            if current > LATEST_REVISION:
                logger.warning(
                    "schema %s is at revision %s, newer than backfill's %s; the newer revisions are not "
                    "breaking, so backfill carries on",
                    schema,
                    current,
                    LATEST_REVISION,
                )
            return MigrationReport(schema.name, start_revision, current, tuple(applied))

        if current is None:
            if await _install_fresh(connection, schema):
                applied.extend(range(1, LATEST_REVISION + 1))
            continue

        if current < OLDEST_UPGRADABLE_REVISION:
            # Possibly another process halfway through installing revision by revision: give it time.
            if time.monotonic() < deadline and start_revision is None:
                await asyncio.sleep(0.1)
                continue
            raise IncompatibleSchemaError(
                f"schema {schema} is at Graphile Worker revision {current}; backfill can upgrade from "
                f"revision {OLDEST_UPGRADABLE_REVISION} onwards. Run graphile-worker@0.18.0 once "
                f"(`npx graphile-worker@0.18.0 --schema-only`) to bring it to {LATEST_REVISION}."
            )

        if await _apply_revision(connection, schema, current + 1):
            applied.append(current + 1)


def _refuse_newer_breaking(revisions: dict[int, bool], schema: SchemaName) -> None:
    newer_breaking = sorted(rev for rev, breaking in revisions.items() if rev > LATEST_REVISION and breaking)
    if newer_breaking:
        raise IncompatibleSchemaError(
            f"schema {schema} holds breaking revision {newer_breaking[-1]}, newer than the revision "
            f"{LATEST_REVISION} this version of backfill understands; upgrade backfill"
        )


async def _insert_revision_rows(connection: Executor, schema: SchemaName, revisions: list[int]) -> bool:
    """Claim ``revisions`` by inserting their rows; ``False`` if another migrator already holds one."""
    try:
        await connection.execute(MigrateSql.for_schema(schema).insert_revisions, revisions, sorted(BREAKING_REVISIONS))
    except asyncpg.UniqueViolationError:
        return False
    return True


async def _install_fresh(connection: Executor, schema: SchemaName) -> bool:
    revisions = list(range(1, LATEST_REVISION + 1))
    try:
        async with connection.transaction():
            if not await _insert_revision_rows(connection, schema, revisions):
                raise _AlreadyMigrated
            await connection.execute(sql.load("install.sql", schema))
            await connection.execute(sql.load("functions.sql", schema))
            # One notice for the whole install, and not a breaking one. `worker:migrate` is database-wide
            # and Node workers shut down on any breaking notice, so announcing the historical breaking
            # revisions 1..19 of a brand-new schema would stop Node workers serving *other* schemas of
            # this database, while no worker can be running on a schema that did not exist.
            await _notify_migrated(connection, schema, LATEST_REVISION)
    except _AlreadyMigrated:
        return False
    logger.info("installed Graphile Worker schema %s at revision %s", schema, LATEST_REVISION)
    return True


async def _apply_revision(connection: Executor, schema: SchemaName, revision: int) -> bool:
    files = _UPGRADE_FILES.get(revision)
    if files is None:
        raise MigrationError(f"backfill has no upgrade step to revision {revision}")
    try:
        async with connection.transaction():
            if not await _insert_revision_rows(connection, schema, [revision]):
                raise _AlreadyMigrated
            for name in files:
                await connection.execute(sql.load(name, schema))
            await _notify_migrated(connection, schema, revision)
    except _AlreadyMigrated:
        return False
    logger.info("upgraded Graphile Worker schema %s to revision %s", schema, revision)
    return True


async def _notify_migrated(connection: Executor, schema: SchemaName, revision: int) -> None:
    message = json.dumps(
        {"migrationNumber": revision, "breaking": revision in BREAKING_REVISIONS}, separators=(",", ":")
    )
    await connection.execute(MigrateSql.for_schema(schema).notify_migrated, message)


class _AlreadyMigrated(Exception):
    """Another migrator claimed the revision first; the transaction is rolled back."""
