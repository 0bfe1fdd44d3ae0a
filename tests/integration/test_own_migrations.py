"""backfill's own migration line: applied once, beside Graphile's schema, whoever races to apply it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from backfill.core.errors import ConfigurationError, MigrationError
from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import CORE_MIGRATIONS, OwnMigration, migrate_own
from backfill.core.schema import SchemaName

CORE_ROWS = [
    ("core", 1, "workers"),
    ("core", 2, "job errors"),
    ("core", 3, "error details"),
    ("core", 4, "worker lanes"),
    ("core", 5, "job results"),
]
SCHEMA = SchemaName("graphile_worker")
MIGRATORS = 6


async def _tables(conn: asyncpg.Connection[Any], schema: str) -> set[str]:
    rows = await conn.fetch(
        "select tablename from pg_tables where schemaname = $1 and tablename like 'backfill%'", schema
    )
    return {row["tablename"] for row in rows}


async def _tracking(conn: asyncpg.Connection[Any], schema: SchemaName) -> list[tuple[str, int, str]]:
    rows = await conn.fetch(f"select line, id, name from {schema.qualify('backfill_migrations')} order by line, id")
    return [(row["line"], row["id"], row["name"]) for row in rows]


async def test_a_fresh_apply_creates_the_tables_and_tracking_rows(conn: asyncpg.Connection[Any]) -> None:
    applied = await migrate_own(conn, SCHEMA)

    assert applied == [1, 2, 3, 4, 5]
    assert await _tables(conn, SCHEMA.name) == {
        "backfill_migrations",
        "backfill_workers",
        "backfill_job_recoveries",
        "backfill_job_errors",
        "backfill_job_results",
    }
    assert await _tracking(conn, SCHEMA) == CORE_ROWS
    columns = await conn.fetch(
        "select column_name, data_type from information_schema.columns"
        " where table_schema = $1 and table_name = 'backfill_workers' order by ordinal_position",
        SCHEMA.name,
    )
    assert [(c["column_name"], c["data_type"]) for c in columns] == [
        ("worker_id", "text"),
        ("hostname", "text"),
        ("pid", "integer"),
        ("started_at", "timestamp with time zone"),
        ("last_heartbeat_at", "timestamp with time zone"),
        ("dead_after", "interval"),
        ("concurrency", "integer"),
        ("tasks", "ARRAY"),
        ("version", "text"),
        ("declared_dead_at", "timestamp with time zone"),
        ("lane", "text"),
    ]


async def test_applying_again_changes_nothing(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    assert await migrate_own(pool, SCHEMA) == [1, 2, 3, 4, 5]
    before = await conn.fetch(f"select * from {SCHEMA.qualify('backfill_migrations')}")

    assert await migrate_own(pool, SCHEMA) == []
    assert await migrate_own(conn, SCHEMA) == []
    assert await conn.fetch(f"select * from {SCHEMA.qualify('backfill_migrations')}") == before


async def test_concurrent_migrators_apply_each_migration_once(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    # Connect everyone first so the migrate_own() calls, not the connection handshakes, overlap.
    connections = [await asyncpg.connect(database_url) for _ in range(MIGRATORS)]
    try:
        results = await asyncio.gather(*(migrate_own(c, SCHEMA) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))

    # Each migration commits on its own, so two migrators may share the work; each id is applied exactly once.
    assert sorted(applied for result in results for applied in result) == [1, 2, 3, 4, 5]
    assert await _tracking(conn, SCHEMA) == CORE_ROWS


async def test_works_on_a_custom_schema_installed_by_migrate(empty_database_url: str) -> None:
    schema = SchemaName('My "odd" schema')
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, schema)
        assert await migrate_own(conn, schema) == [1, 2, 3, 4, 5]
        assert await _tables(conn, schema.name) == {
            "backfill_migrations",
            "backfill_workers",
            "backfill_job_recoveries",
            "backfill_job_errors",
            "backfill_job_results",
        }
        assert await _tables(conn, "graphile_worker") == set()
    finally:
        await conn.close()


async def test_lines_are_tracked_apart_and_a_failed_migration_leaves_no_row(conn: asyncpg.Connection[Any]) -> None:
    await migrate_own(conn, SCHEMA)
    # Line "extra" reuses id 1 and the core SQL file: core's id 1 must not count as extra's, so it runs (and
    # fails, since the tables exist), and its transaction takes the tracking row down with it.
    with pytest.raises(MigrationError, match="already exists"):
        await migrate_own(conn, SCHEMA, line="extra", migrations=CORE_MIGRATIONS)

    assert await _tracking(conn, SCHEMA) == CORE_ROWS


async def test_a_missing_schema_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(MigrationError, match="does not exist"):
            await migrate_own(conn, SCHEMA)
    finally:
        await conn.close()


async def test_a_connection_inside_a_transaction_is_refused(conn: asyncpg.Connection[Any]) -> None:
    async with conn.transaction():
        with pytest.raises(MigrationError, match="outside any transaction"):
            await migrate_own(conn, SCHEMA)


async def test_duplicate_ids_in_a_line_are_refused(conn: asyncpg.Connection[Any]) -> None:
    twice = [OwnMigration(1, "a", "backfill_001_workers.sql"), OwnMigration(1, "b", "backfill_001_workers.sql")]
    with pytest.raises(ConfigurationError, match="distinct positive ids"):
        await migrate_own(conn, SCHEMA, migrations=twice)
