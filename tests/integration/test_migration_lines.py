"""backfill's own migration lines: listed once, in OWN_LINES, and installed from that list."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import asyncpg

import backfill
from backfill.core.migrations.own import MigrationLine
from backfill.core.schema import SchemaName
from backfill.dlq.migrations import DLQ_MIGRATION_LINE
from backfill.migrations import OWN_LINES, migrate_all

SCHEMA = SchemaName("graphile_worker")


def test_every_line_backfill_defines_is_in_the_registry() -> None:
    # A line defined in some module but missing from OWN_LINES would be installed by no installer.
    defined: dict[str, MigrationLine] = {}
    for found in pkgutil.walk_packages(backfill.__path__, "backfill."):
        if found.name.startswith("backfill.integrations."):
            # Optional extras that install no tables; importing them needs their framework (and reading a
            # module's values would touch Django's lazy settings, which refuse to be read unconfigured).
            continue
        module = importlib.import_module(found.name)
        defined.update((value.name, value) for value in vars(module).values() if isinstance(value, MigrationLine))
    assert defined == {line.name: line for line in OWN_LINES}
    assert len(OWN_LINES) == len(defined)  # no line listed twice


async def test_migrate_all_installs_every_registered_line_once(conn: asyncpg.Connection[Any]) -> None:
    _, applied = await migrate_all(conn, SCHEMA)

    assert applied == [f"{line.name}/{migration.id}" for line in OWN_LINES for migration in line.migrations]
    tracked = await conn.fetch(f"select line, id from {SCHEMA.qualify('backfill_migrations')}")
    assert {(row["line"], row["id"]) for row in tracked} == {
        (line.name, migration.id) for line in OWN_LINES for migration in line.migrations
    }
    assert (await migrate_all(conn, SCHEMA))[1] == []


async def test_migrate_all_leaves_the_dead_letter_line_out_when_asked(conn: asyncpg.Connection[Any]) -> None:
    _, applied = await migrate_all(conn, SCHEMA, dlq=False)

    assert applied == [
        f"{line.name}/{migration.id}"
        for line in OWN_LINES
        if line is not DLQ_MIGRATION_LINE
        for migration in line.migrations
    ]
