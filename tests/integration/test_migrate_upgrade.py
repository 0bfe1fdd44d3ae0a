"""Upgrading a schema left at an older revision, and refusing revisions backfill must not touch."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.errors import IncompatibleSchemaError, MigrationError
from backfill.core.migrations.graphile import current_revision, migrate
from tests.support.waiting import listening

BREAKING = {1, 3, 11, 13, 14, 16, 19}

# Same signature as the real add_job (create or replace keeps argument names and defaults), with a body that
# cannot be mistaken for it: if revision 20 re-creates the function, the sentinel is gone.
_SENTINEL_ADD_JOB = """
create or replace function graphile_worker.add_job(
  identifier text, payload json default null, queue_name text default null, run_at timestamptz default null,
  max_attempts int default null, job_key text default null, priority int default null,
  flags text[] default null, job_key_mode text default 'replace'
) returns graphile_worker._private_jobs language plpgsql as $$
begin
  raise exception 'sentinel add_job from revision 18';
end;
$$
"""


async def _roll_back_to(connection: asyncpg.Connection[Any], revision: int) -> None:
    await connection.execute("delete from graphile_worker.migrations where id > $1", revision)


async def _revision_rows(connection: asyncpg.Connection[Any]) -> list[tuple[int, bool]]:
    rows = await connection.fetch("select id, breaking from graphile_worker.migrations order by id")
    return [(row["id"], row["breaking"]) for row in rows]


async def test_upgrade_from_19_applies_only_20(conn: asyncpg.Connection[Any], database_url: str) -> None:
    await _roll_back_to(conn, 19)
    async with listening(database_url, "worker:migrate") as notifications:
        report = await migrate(conn)
        payloads = await notifications.flush()
    assert (report.from_revision, report.to_revision, report.applied) == (19, 20, (20,))
    assert not report.installed_fresh
    assert payloads == ['{"migrationNumber":20,"breaking":false}']
    assert await _revision_rows(conn) == [(n, n in BREAKING) for n in range(1, 21)]


async def test_upgrade_from_18_applies_19_and_20_and_recreates_add_job(
    conn: asyncpg.Connection[Any], database_url: str
) -> None:
    await _roll_back_to(conn, 18)
    await conn.execute(_SENTINEL_ADD_JOB)
    with pytest.raises(asyncpg.RaiseError, match="sentinel"):
        await conn.execute("select graphile_worker.add_job('t')")

    async with listening(database_url, "worker:migrate") as notifications:
        report = await migrate(conn)
        payloads = await notifications.flush()

    assert (report.from_revision, report.to_revision, report.applied) == (18, 20, (19, 20))
    # 19 is breaking: running Node workers shut down on it.
    assert [json.loads(p) for p in payloads] == [
        {"migrationNumber": 19, "breaking": True},
        {"migrationNumber": 20, "breaking": False},
    ]
    assert await _revision_rows(conn) == [(n, n in BREAKING) for n in range(1, 21)]
    source = await conn.fetchval("select prosrc from pg_proc where oid = 'graphile_worker.add_job'::regproc")
    assert "sentinel" not in source
    job = await add_job(conn, "after.upgrade", {"ok": True})
    assert job.payload == {"ok": True}


async def test_revision_17_is_refused_without_waiting(conn: asyncpg.Connection[Any], database_url: str) -> None:
    await _roll_back_to(conn, 17)
    async with listening(database_url, "worker:migrate") as notifications:
        started = time.monotonic()
        with pytest.raises(IncompatibleSchemaError) as caught:
            await migrate(conn)
        elapsed = time.monotonic() - started
        assert await notifications.flush() == []
    message = str(caught.value)
    assert "revision 17" in message
    assert "revision 18" in message
    assert "graphile-worker" in message
    assert isinstance(caught.value, MigrationError)
    # The 30 s grace is for a schema that appeared while we watched (another migrator at work); a schema
    # that was already at 17 when we looked is refused at once.
    assert elapsed < 5
    assert await current_revision(conn) == 17


async def test_breaking_revision_21_is_refused(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, true)")
    with pytest.raises(IncompatibleSchemaError, match="breaking revision 21") as caught:
        await migrate(conn)
    assert "upgrade backfill" in str(caught.value)


async def test_breaking_revision_refused_even_behind_a_non_breaking_one(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, true), (22, false)")
    with pytest.raises(IncompatibleSchemaError, match="breaking revision 21"):
        await migrate(conn)


async def test_non_breaking_revision_21_is_accepted_with_a_warning(
    conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    await conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, false)")
    with caplog.at_level(logging.WARNING, logger="backfill.migrate"):
        report = await migrate(conn)
    assert (report.from_revision, report.to_revision, report.applied) == (21, 21, ())
    warnings = [r for r in caplog.records if r.name == "backfill.migrate" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "revision 21" in warnings[0].getMessage()
    assert await current_revision(conn) == 21


async def test_newer_breaking_revision_is_refused_before_upgrading(conn: asyncpg.Connection[Any]) -> None:
    # A schema missing 19 and 20 but already holding a breaking 21 must not get 19/20 applied under it.
    await _roll_back_to(conn, 18)
    await conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, true)")
    with pytest.raises(IncompatibleSchemaError):
        await migrate(conn)
    assert [row[0] for row in await _revision_rows(conn)] == [*range(1, 19), 21]
