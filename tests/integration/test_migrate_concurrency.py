"""Racing migrators: however many start at once, one installs, the rest find the work done."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import asyncpg

from backfill.core.migrations import sql
from backfill.core.migrations.graphile import MigrationReport, migrate
from backfill.core.schema import SchemaName
from tests.support.waiting import listening, wait_for

MIGRATORS = 6
PROCESSES = 3


async def _revision_rows(dsn: str) -> list[tuple[int, bool]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("select id, breaking from graphile_worker.migrations order by id")
    finally:
        await connection.close()
    return [(row["id"], row["breaking"]) for row in rows]


def _check_one_winner(reports: list[MigrationReport]) -> None:
    winners = [r for r in reports if r.applied]
    assert len(winners) == 1, reports
    assert winners[0].applied == tuple(range(1, 21))
    assert all(r.to_revision == 20 for r in reports)


async def test_concurrent_migrators_on_one_database(empty_database_url: str) -> None:
    # Connect everyone first so the migrate() calls, not the connection handshakes, overlap.
    connections = [await asyncpg.connect(empty_database_url) for _ in range(MIGRATORS)]
    try:
        async with listening(empty_database_url, "worker:migrate") as notifications:
            reports = await asyncio.gather(*(migrate(c) for c in connections))
            payloads = await notifications.flush()
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    _check_one_winner(list(reports))
    assert len(await _revision_rows(empty_database_url)) == 20
    # One set of notifications: losers roll back, and their notifications with them.
    assert [json.loads(p)["migrationNumber"] for p in payloads] == [20]


_CHILD = """
import asyncio, json, sys
import asyncpg
from backfill.core.migrations.graphile import migrate

async def main() -> None:
    connection = await asyncpg.connect(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # the parent releases every child at once
    report = await migrate(connection)
    await connection.close()
    print(json.dumps({"applied": list(report.applied), "to": report.to_revision}), flush=True)

asyncio.run(main())
"""


async def test_concurrent_migrator_processes(empty_database_url: str) -> None:
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CHILD,
            empty_database_url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                assert (await child.stdout.readline()).strip() == b"ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        async with asyncio.timeout(60):
            outputs = [await child.communicate() for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    for child, (_, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr.decode()
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert sorted(len(r["applied"]) for r in results) == [0] * (PROCESSES - 1) + [20]
    assert all(r["to"] == 20 for r in results)
    assert len(await _revision_rows(empty_database_url)) == 20


async def _is_waiting_on_a_lock(observer: asyncpg.Connection[Any], pid: int) -> bool:
    return bool(await observer.fetchval("select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid))


async def test_waits_for_a_migrator_that_installs_revision_by_revision(empty_database_url: str) -> None:
    """A Node migrator mid-way through revisions 1..18 is waited for, not mistaken for a too-old schema."""
    schema = SchemaName("graphile_worker")
    other = await asyncpg.connect(empty_database_url)  # plays graphile-worker's own migrator
    ours = await asyncpg.connect(empty_database_url)
    observer = await asyncpg.connect(empty_database_url)
    try:
        await other.execute(
            "create schema graphile_worker; create table graphile_worker.migrations "
            "(id int primary key, ts timestamptz not null default now(), breaking boolean not null default false)"
        )
        # Node claims revision 1 first thing in its transaction; our install then blocks on that row.
        in_progress = other.transaction()
        await in_progress.start()
        await other.execute("insert into graphile_worker.migrations (id, breaking) values (1, true)")

        ours_pid = ours.get_server_pid()
        migrating = asyncio.create_task(migrate(ours))
        await wait_for(lambda: _is_waiting_on_a_lock(observer, ours_pid), message="our install blocked on row 1")

        # Node finishes a run of revisions that leaves the schema at 17, below what we can upgrade from.
        await other.execute(sql.load("install.sql", schema))
        await other.execute(sql.load("functions.sql", schema))
        await other.execute(
            "insert into graphile_worker.migrations (id, breaking) "
            "select n, n = any('{3,11,13,14,16}'::int[]) from generate_series(2, 17) as n"
        )
        await in_progress.commit()

        async def revisions_read_at() -> Any:
            row = await observer.fetchrow("select query, query_start from pg_stat_activity where pid = $1", ours_pid)
            if row is not None and "select id, breaking from" in (row["query"] or ""):
                return row["query_start"]
            return None

        # Having lost the race for row 1, our migrator re-reads the revisions and sees 17. Reading them a
        # second time proves it chose to wait for the other migrator rather than give up on "too old".
        first_read = await wait_for(revisions_read_at, message="our migrator re-reading the revisions")

        async def read_again() -> bool:
            latest = await revisions_read_at()
            return latest is not None and latest > first_read

        await wait_for(read_again, message="our migrator polling the revisions again")
        assert not migrating.done()

        await other.execute("insert into graphile_worker.migrations (id, breaking) values (18, false)")
        async with asyncio.timeout(15):
            report = await migrating
    finally:
        await asyncio.gather(other.close(), ours.close(), observer.close())
    assert report.from_revision is None
    assert report.applied == (19, 20)
    assert await _revision_rows(empty_database_url) == [(n, n in {1, 3, 11, 13, 14, 16, 19}) for n in range(1, 21)]
