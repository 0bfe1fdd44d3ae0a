"""Rule 8 (issue #9, D1): anything a handler raises can be recorded, and one bad result never blocks the others.

PostgreSQL text cannot hold a NUL byte, and a lone surrogate cannot even be encoded to UTF-8. Before the fix,
one such error message made the whole batched fail statement error: the job stayed locked for ever, every later
result queued behind it, completions that had gone through were re-sent and counted as lost leases, and the
worker could not finish its shutdown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job, add_jobs
from backfill.core.jobs import Job, JobSpec
from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import migrate_own
from backfill.core.run.completer import UNSTORABLE_MESSAGE, Completer, Failure
from backfill.core.run.queries import WorkerQueries
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import JOBS_TABLE, fast_options, rows_locked_by, running, wait_listening
from tests.support.postgres import PostgresServer, unique_database_name
from tests.support.waiting import wait_for

ORDINARY_JOBS = 200


class Unprintable(Exception):
    """An exception whose ``str()`` itself raises: there is no message to take from it."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def bad_results_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("ok")
    async def ok(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0)

    @registry.task("bad")
    async def bad(payload: dict[str, str]) -> None:
        raise ValueError("bad " + payload["s"])

    @registry.task("bad_file_name")
    async def bad_file_name(payload: dict[str, Any]) -> None:
        # A lone surrogate, as os.fsdecode() makes of a file name that is not UTF-8: not even encodable.
        raise FileNotFoundError("no such file: " + b"x\xffy".decode("utf-8", "surrogateescape"))

    @registry.task("priced")
    async def priced(payload: dict[str, Any]) -> None:
        raise ValueError("価格 missing")  # text a LATIN1 database cannot hold, though it is valid Unicode

    @registry.task("unprintable")
    async def unprintable(payload: dict[str, Any]) -> None:
        raise Unprintable

    return registry


async def _settled(conn: asyncpg.Connection[Any], bad_ids: list[int]) -> bool:
    """Every ordinary job completed (deleted) and every bad one failed for good and unlocked."""
    left = await conn.fetchval(
        f"select count(*) from {JOBS_TABLE} where not (id = any($1::bigint[]))"
        f" or (locked_by is not null) or attempts < max_attempts",
        bad_ids,
    )
    return int(left) == 0


async def test_errors_postgres_cannot_hold_are_recorded_and_block_nothing(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    worker = Worker(database_url, tasks=bad_results_registry(), options=fast_options(concurrency=4))
    async with running(worker, timeout=15) as run:
        await wait_listening(conn)
        # The bad ones in the middle of ordinary work, so that their batch holds successes and failures alike.
        before = await add_jobs(pool, [JobSpec("ok", {"n": n}) for n in range(ORDINARY_JOBS // 2)])
        nul = await add_job(pool, "bad", {"s": "a\x00b"}, max_attempts=1)
        surrogate = await add_job(pool, "bad_file_name", max_attempts=1)
        unprintable = await add_job(pool, "unprintable", max_attempts=1)
        after = await add_jobs(pool, [JobSpec("ok", {"n": n}) for n in range(ORDINARY_JOBS // 2)])
        assert len(before) + len(after) == ORDINARY_JOBS
        bad_ids = [nul.id, surrogate.id, unprintable.id]

        await wait_for(lambda: _settled(conn, bad_ids), timeout=15, message="every job recorded")
        worker.stop()
        # Promptly: nothing is waiting, so the stop needs no grace period at all.
        summary = await asyncio.wait_for(run, 5)

    assert summary.succeeded == ORDINARY_JOBS
    assert (summary.failed, summary.permanently_failed, summary.lost_leases) == (3, 3, 0)
    assert await rows_locked_by(conn, worker.worker_id) == 0

    errors = {
        row["id"]: row["last_error"]
        for row in await conn.fetch(f"select id, last_error from {JOBS_TABLE} where id = any($1::bigint[])", bad_ids)
    }
    assert errors[nul.id] == "ValueError: bad a\\x00b"
    assert errors[surrogate.id] == "FileNotFoundError: no such file: x\\udcffy"
    assert "Unprintable" in errors[unprintable.id]  # the type survives a message that cannot be read
    history = await conn.fetch(
        "select job_id, error from graphile_worker.backfill_job_errors where job_id = any($1::bigint[])", bad_ids
    )
    assert {row["job_id"]: row["error"] for row in history} == errors


@pytest.fixture
async def latin1_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A migrated database whose encoding is LATIN1: the server refuses (SQLSTATE 22P05) any character that
    encoding lacks, which no sanitising of the text on the client side foresees."""
    name = unique_database_name()
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(
            f"create database \"{name}\" template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'"
        )
    finally:
        await admin.close()
    url = postgres_server.dsn_for(name)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    yield url
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


async def test_a_failure_the_database_refuses_is_written_alone_and_holds_nothing_back(
    latin1_database_url: str,
) -> None:
    """The completer's own guard: a batched fail statement refused for one row's values is split up, the
    refused row is written in ASCII, and the completions of the same flush are written once, not re-sent."""
    worker = Worker(latin1_database_url, tasks=bad_results_registry(), options=fast_options(concurrency=4))
    conn = await asyncpg.connect(latin1_database_url)
    async with asyncpg.create_pool(latin1_database_url, min_size=1, max_size=2) as pool:
        try:
            async with running(worker, timeout=15) as run:
                await wait_listening(conn)
                await add_jobs(pool, [JobSpec("ok", {"n": n}) for n in range(ORDINARY_JOBS // 2)])
                priced = await add_job(pool, "priced", max_attempts=1)
                nul = await add_job(pool, "bad", {"s": "a\x00b"}, max_attempts=1)
                await add_jobs(pool, [JobSpec("ok", {"n": n}) for n in range(ORDINARY_JOBS // 2)])
                bad_ids = [priced.id, nul.id]

                await wait_for(lambda: _settled(conn, bad_ids), timeout=15, message="every job recorded")
                worker.stop()
                summary = await asyncio.wait_for(run, 5)

            assert summary.succeeded == ORDINARY_JOBS
            assert (summary.failed, summary.lost_leases) == (2, 0)
            assert await rows_locked_by(conn, worker.worker_id) == 0
            rows = await conn.fetch(
                "select j.id, j.last_error, e.error, e.exception_type, e.traceback"
                f" from {JOBS_TABLE} as j join graphile_worker.backfill_job_errors as e on e.job_id = j.id"
            )
            by_id = {row["id"]: row for row in rows}
            assert by_id.keys() == set(bad_ids)
            refused = by_id[priced.id]
            assert refused["last_error"] == refused["error"] == "ValueError: \\u4fa1\\u683c missing"
            assert refused["exception_type"] == "ValueError"
            assert "\\u4fa1\\u683c missing" in refused["traceback"]
            assert by_id[nul.id]["last_error"] == "ValueError: bad a\\x00b"  # its neighbour, unharmed
        finally:
            await conn.close()


async def test_a_kept_return_value_the_database_refuses_is_kept_without_it_and_holds_nothing_back(
    latin1_database_url: str,
) -> None:
    """The same guard for kept outcomes: a batch of them refused for one return value is written one by one, the
    refused one without its value (the job still succeeds), the others with theirs."""
    registry = TaskRegistry()

    @registry.task("kept", keep_result=60)
    async def kept(payload: dict[str, Any]) -> dict[str, str]:
        return {"price": "価格" if payload["n"] == 0 else str(payload["n"])}  # LATIN1 cannot hold the first

    worker = Worker(latin1_database_url, tasks=registry, options=fast_options(concurrency=4))
    conn = await asyncpg.connect(latin1_database_url)
    async with asyncpg.create_pool(latin1_database_url, min_size=1, max_size=2) as pool:
        try:
            jobs = await add_jobs(pool, [JobSpec("kept", {"n": n}) for n in range(20)])
            summary = await worker.run_once()

            assert (summary.succeeded, summary.failed, summary.lost_leases) == (20, 0, 0)
            assert await conn.fetchval(f"select count(*) from {JOBS_TABLE}") == 0
            rows = await conn.fetch(
                "select job_id, state, result::text as result, error from graphile_worker.backfill_job_results"
            )
            by_id = {row["job_id"]: row for row in rows}
            assert by_id.keys() == {job.id for job in jobs}
            refused = by_id[jobs[0].id]
            assert (refused["state"], refused["result"]) == ("succeeded", None)
            assert refused["error"].startswith("the return value was not kept: the database refused it")
            assert "SQLSTATE" in refused["error"] and "価格" not in refused["error"]
            kept_values = {row["job_id"]: json.loads(row["result"]) for row in rows if row["job_id"] != jobs[0].id}
            assert kept_values == {job.id: {"price": str(n)} for n, job in enumerate(jobs) if n}
        finally:
            await conn.close()


async def _claimed(conn: asyncpg.Connection[Any], job_id: int, worker_id: str) -> Job:
    """Lock a job for ``worker_id`` as a fetch would (attempt counted) and return it as the worker holds it."""
    row = await conn.fetchrow(
        f"update {JOBS_TABLE} set locked_by = $2, locked_at = now(), attempts = attempts + 1"
        " where id = $1 returning *, payload::text as payload",
        job_id,
        worker_id,
    )
    assert row is not None
    return Job.from_record(row, task_identifier="t")


async def test_the_completer_writes_what_it_can_and_falls_back_to_a_fixed_message_for_the_rest(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    """The last resort: a failure refused even in ASCII (here a replacement payload that is not JSON, which no
    escaping of the texts can mend) is written with the fixed message and the job's own payload, while the
    completion and the good failure of the same flush are written once each."""
    await migrate_own(conn, SchemaName("graphile_worker"))
    worker_id = "completer-test"
    done, good, broken = [await add_job(pool, "t", {"n": n}) for n in range(3)]
    done_job, good_job, broken_job = [await _claimed(conn, job.id, worker_id) for job in (done, good, broken)]
    lost: list[tuple[str, list[int]]] = []
    completer = Completer(
        pool, WorkerQueries.for_schema(SchemaName("graphile_worker")), worker_id, on_lost=lambda *a: lost.append(a)
    )
    completer.complete(done_job)
    completer.fail(Failure(job=good_job, message="ValueError: fine", error_type="ValueError", traceback="tb"))
    completer.fail(Failure(job=broken_job, message="RuntimeError: odd", replacement_payload="{not json"))
    writer = asyncio.create_task(completer.run())
    try:
        await asyncio.wait_for(completer.drained(), 10)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await completer.close()

    assert (completer.lost_leases, completer.lost_completions, completer.write_failures, lost) == (0, 0, 0, [])
    rows = {
        row["id"]: row
        for row in await conn.fetch(f"select id, last_error, locked_by, payload::text as payload from {JOBS_TABLE}")
    }
    assert done.id not in rows
    assert rows[good.id]["last_error"] == "ValueError: fine"
    assert rows[broken.id]["last_error"] == UNSTORABLE_MESSAGE
    assert json.loads(rows[broken.id]["payload"]) == {"n": 2}  # its own payload kept, not the broken one
    assert all(row["locked_by"] is None for row in rows.values())
    history = await conn.fetch(
        "select job_id, error, exception_type, traceback from graphile_worker.backfill_job_errors order by job_id"
    )
    assert [tuple(row) for row in history] == [
        (good.id, "ValueError: fine", "ValueError", "tb"),
        (broken.id, UNSTORABLE_MESSAGE, None, None),
    ]
