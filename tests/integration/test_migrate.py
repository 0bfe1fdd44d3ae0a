"""migrate() on a fresh database: one set of revision rows, reported, idempotent, refusing misuse."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import MigrationError
from backfill.core.migrations.graphile import LATEST_REVISION, current_revision, migrate
from tests.support.waiting import listening

# From the contract (graphile-compat.md), not from backfill's own constant, so a typo there is caught.
BREAKING = {1, 3, 11, 13, 14, 16, 19}


async def test_fresh_install_writes_revisions_1_to_20_and_reports_them(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await current_revision(connection) is None
        report = await migrate(connection)
        rows = await connection.fetch("select id, breaking, ts from graphile_worker.migrations order by id")
        ts_ok = await connection.fetchval(
            "select bool_and(ts between now() - interval '1 minute' and now()) from graphile_worker.migrations"
        )
        assert await current_revision(connection) == 20
    finally:
        await connection.close()
    assert [(row["id"], row["breaking"]) for row in rows] == [(n, n in BREAKING) for n in range(1, 21)]
    assert ts_ok
    assert LATEST_REVISION == 20
    assert report.schema == "graphile_worker"
    assert report.from_revision is None
    assert report.to_revision == 20
    assert report.applied == tuple(range(1, 21))
    assert report.installed_fresh


async def test_fresh_install_sends_one_non_breaking_notice(empty_database_url: str) -> None:
    # Not one per revision: Node workers of other schemas in this database would take the historical
    # breaking revisions as a reason to shut down.
    async with listening(empty_database_url, "worker:migrate") as notifications:
        connection = await asyncpg.connect(empty_database_url)
        try:
            await migrate(connection)
        finally:
            await connection.close()
        payloads = await notifications.flush()
    # Byte-exact: Node parses these, and compact separators are what graphile-worker sends.
    assert payloads == ['{"migrationNumber":20,"breaking":false}']


async def test_second_run_applies_nothing(database_url: str) -> None:
    async with listening(database_url, "worker:migrate") as notifications:
        connection = await asyncpg.connect(database_url)
        try:
            before = await connection.fetch("select id, ts, breaking from graphile_worker.migrations order by id")
            report = await migrate(connection)
            after = await connection.fetch("select id, ts, breaking from graphile_worker.migrations order by id")
        finally:
            await connection.close()
        assert await notifications.flush() == []
    assert after == before
    assert (report.from_revision, report.to_revision, report.applied) == (20, 20, ())
    assert not report.installed_fresh


async def test_migrate_accepts_a_pool(empty_database_url: str) -> None:
    async with asyncpg.create_pool(empty_database_url, min_size=1, max_size=2) as pool:
        report = await migrate(pool)
        assert report.to_revision == 20
        assert await current_revision(pool) == 20


async def test_migrate_inside_a_transaction_is_refused(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        async with connection.transaction():
            with pytest.raises(MigrationError, match="outside any transaction"):
                await migrate(connection)
            # Refused before touching anything: the schema was not created inside the caller's transaction.
            assert await connection.fetchval("select to_regnamespace('graphile_worker') is null")
    finally:
        await connection.close()


async def test_current_revision_without_schema_or_rows(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await current_revision(connection) is None
        await connection.execute("create schema graphile_worker")
        assert await current_revision(connection) is None
        await connection.execute("create table graphile_worker.migrations (id int primary key)")
        assert await current_revision(connection) is None
        await connection.execute("insert into graphile_worker.migrations values (7), (18)")
        assert await current_revision(connection) == 18
    finally:
        await connection.close()


async def test_installed_schema_has_the_tables_functions_and_view(conn: asyncpg.Connection[Any]) -> None:
    tables = await conn.fetch(
        "select relname, relkind::text as relkind, relrowsecurity from pg_class "
        "where relnamespace = 'graphile_worker'::regnamespace and relkind in ('r', 'v') order by relname"
    )
    assert [(r["relname"], r["relkind"], r["relrowsecurity"]) for r in tables] == [
        ("_private_job_queues", "r", True),
        ("_private_jobs", "r", True),
        ("_private_known_crontabs", "r", True),
        ("_private_tasks", "r", True),
        ("jobs", "v", False),
        ("migrations", "r", False),
    ]
    functions = await conn.fetch(
        "select proname from pg_proc where pronamespace = 'graphile_worker'::regnamespace order by proname"
    )
    assert [f["proname"] for f in functions] == [
        "add_job",
        "add_jobs",
        "complete_jobs",
        "force_unlock_workers",
        "permanently_fail_jobs",
        "remove_job",
        "reschedule_jobs",
    ]


ODD_SCHEMA = 'My "odd" schema'


async def test_schema_name_needing_quotes_installs_and_enqueues(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        report = await migrate(connection, ODD_SCHEMA)
        assert report.schema == ODD_SCHEMA
        assert report.applied == tuple(range(1, 21))
        assert await current_revision(connection, ODD_SCHEMA) == 20
        # The default schema was left alone.
        assert await current_revision(connection) is None
        assert await connection.fetchval("select to_regnamespace('graphile_worker') is null")

        job = await add_job(connection, "odd.task", {"x": 1}, queue_name="odd-q", schema=ODD_SCHEMA)
        assert (job.task_identifier, job.queue_name, job.payload) == ("odd.task", "odd-q", {"x": 1})
        row = await connection.fetchrow(
            'select task_identifier, queue_name from "My ""odd"" schema".jobs where id = $1', job.id
        )
        assert row is not None
        assert (row["task_identifier"], row["queue_name"]) == ("odd.task", "odd-q")
        assert (await migrate(connection, ODD_SCHEMA)).applied == ()
    finally:
        await connection.close()


async def test_schema_from_environment(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "from_env_schema")
    connection = await asyncpg.connect(empty_database_url)
    try:
        report = await migrate(connection)
        revision = await connection.fetchval("select max(id) from from_env_schema.migrations")
    finally:
        await connection.close()
    assert report.schema == "from_env_schema"
    assert revision == 20


async def test_database_errors_are_wrapped_and_roll_back(empty_database_url: str) -> None:
    connection = await asyncpg.connect(empty_database_url)
    try:
        # A stray table where the install wants to create one: the install must fail as a whole.
        await connection.execute("create schema graphile_worker; create table graphile_worker._private_tasks (x int)")
        with pytest.raises(MigrationError, match="already exists") as caught:
            await migrate(connection)
        assert isinstance(caught.value.__cause__, asyncpg.DuplicateTableError)
        assert await connection.fetchval("select count(*) from graphile_worker.migrations") == 0
        assert await connection.fetchval("select to_regclass('graphile_worker._private_jobs') is null")
    finally:
        await connection.close()
