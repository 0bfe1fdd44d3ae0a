"""The sweeper: what dead backfill workers held is released (or failed as a poison pill), nothing else is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.events import Event, Events
from backfill.core.migrations.own import ADVISORY_LOCK_CLASS, migrate_own
from backfill.core.run.queries import WorkerQueries
from backfill.core.schema import SchemaName
from backfill.core.upkeep.sweeper import SweepReport, poison_message, sweep, sweep_periodically
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"
QUEUES = "graphile_worker._private_job_queues"
WORKERS = "graphile_worker.backfill_workers"
RECOVERIES = "graphile_worker.backfill_job_recoveries"


@pytest.fixture
async def own_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await migrate_own(pool, SCHEMA)
    return pool


async def _register(conn: asyncpg.Connection[Any], worker_id: str, *, silent_for: str, dead_after: str) -> None:
    """A registered worker whose last heartbeat was ``silent_for`` ago (an SQL interval)."""
    await conn.execute(
        f"insert into {WORKERS} (worker_id, hostname, pid, last_heartbeat_at, dead_after)"
        " values ($1, 'test-host', 1, now() - $2::text::interval, $3::text::interval)",
        worker_id,
        silent_for,
        dead_after,
    )


async def _dead(conn: asyncpg.Connection[Any], worker_id: str) -> None:
    await _register(conn, worker_id, silent_for="1 hour", dead_after="10 seconds")


async def _alive(conn: asyncpg.Connection[Any], worker_id: str) -> None:
    await _register(conn, worker_id, silent_for="0 seconds", dead_after="10 seconds")


async def _claim(conn: asyncpg.Connection[Any], job_id: int, worker_id: str) -> Any:
    """Lock a job (and its named queue) as the worker's fetch would; return the claim's locked_at."""
    locked_at = await conn.fetchval(
        f"update {JOBS} set locked_by = $2, locked_at = now(), attempts = attempts + 1 where id = $1"
        " returning locked_at",
        job_id,
        worker_id,
    )
    await conn.execute(
        f"update {QUEUES} set locked_by = $2, locked_at = now()"
        f" where id = (select job_queue_id from {JOBS} where id = $1)",
        job_id,
        worker_id,
    )
    return locked_at


async def _job(conn: asyncpg.Connection[Any], job_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(f"select * from {JOBS} where id = $1", job_id)
    assert row is not None
    return row


async def _snapshot(conn: asyncpg.Connection[Any]) -> list[list[asyncpg.Record]]:
    return [await conn.fetch(f"select * from {table} order by 1") for table in (JOBS, QUEUES, WORKERS, RECOVERIES)]


async def test_a_dead_workers_jobs_and_queues_are_released(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    in_queue = await add_job(own_pool, "t", queue_name="q1")
    plain = await add_job(own_pool, "t")
    await _dead(conn, "dead-1")
    await _claim(conn, in_queue.id, "dead-1")
    await _claim(conn, plain.id, "dead-1")
    run_at_before = (await _job(conn, plain.id))["run_at"]

    report = await sweep(own_pool, SCHEMA)

    assert report == SweepReport(["dead-1"], sorted([in_queue.id, plain.id]), [], ["q1"], dry_run=False)
    for job_id in (in_queue.id, plain.id):
        job = await _job(conn, job_id)
        assert (job["locked_by"], job["locked_at"], job["attempts"]) == (None, None, 0)  # attempt refunded
        assert job["is_available"]
    assert (await _job(conn, plain.id))["run_at"] == run_at_before
    assert await conn.fetchval(f"select locked_by is null and locked_at is null from {QUEUES}")
    # Declared dead, not deleted: later sweeps still release what it might take before it learns of it.
    assert await conn.fetchval(f"select declared_dead_at is not null from {WORKERS} where worker_id = 'dead-1'")
    counts = await conn.fetch(f"select job_id, recoveries, last_worker_id from {RECOVERIES} order by job_id")
    assert [tuple(row) for row in counts] == [(job_id, 1, "dead-1") for job_id in sorted([in_queue.id, plain.id])]


async def test_live_and_unregistered_owners_are_left_alone(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    live_job = await add_job(own_pool, "t", queue_name="live-q")
    node_job = await add_job(own_pool, "t", queue_name="node-q")
    await _alive(conn, "live-1")
    await _claim(conn, live_job.id, "live-1")
    await _claim(conn, node_job.id, "worker-0123abcd")  # a Node worker: never registered
    before = await _snapshot(conn)

    report = await sweep(own_pool, SCHEMA)

    assert report == SweepReport([], [], [], [], dry_run=False)
    assert await _snapshot(conn) == before


async def test_each_worker_is_judged_by_its_own_dead_after(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await _register(conn, "patient", silent_for="30 seconds", dead_after="1 minute")
    await _register(conn, "strict", silent_for="30 seconds", dead_after="10 seconds")

    report = await sweep(own_pool, SCHEMA)

    assert report.dead_workers == ["strict"]
    assert await conn.fetchval(f"select array_agg(worker_id) from {WORKERS} where declared_dead_at is null") == [
        "patient"
    ]


async def test_a_job_rescued_more_than_max_recoveries_times_fails_as_a_poison_pill(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(own_pool, "t", queue_name="q", max_attempts=5)
    reports = []
    for i in range(4):
        await _dead(conn, f"dead-{i}")
        await _claim(conn, job.id, f"dead-{i}")
        reports.append(await sweep(own_pool, SCHEMA, max_recoveries=3))

    assert [r.released_jobs for r in reports] == [[job.id]] * 3 + [[]]
    assert reports[-1].poisoned_jobs == [job.id]
    assert reports[-1].released_queues == ["q"]
    row = await _job(conn, job.id)
    assert (row["attempts"], row["max_attempts"], row["locked_by"], row["locked_at"]) == (5, 5, None, None)
    assert row["last_error"] == poison_message(4, "dead-3", 3)
    assert "4 workers that died (last: dead-3)" in row["last_error"]
    assert "max_recoveries=3" in row["last_error"]
    assert not row["is_available"]
    assert await conn.fetchval(f"select locked_by from {QUEUES}") is None


async def test_a_dry_run_reports_the_same_and_changes_nothing(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    released = await add_job(own_pool, "t", queue_name="q")
    poisoned = await add_job(own_pool, "t")
    await _dead(conn, "dead-1")
    await _claim(conn, released.id, "dead-1")
    await _claim(conn, poisoned.id, "dead-1")
    await conn.execute(
        f"insert into {RECOVERIES} values ($1, 3, now(), 'earlier'), (9999999, 1, now(), 'gone')", poisoned.id
    )
    before = await _snapshot(conn)

    dry = await sweep(own_pool, SCHEMA, max_recoveries=3, dry_run=True)

    assert await _snapshot(conn) == before
    assert dry == SweepReport(["dead-1"], [released.id], [poisoned.id], ["q"], dry_run=True)
    real = await sweep(own_pool, SCHEMA, max_recoveries=3)
    assert real == SweepReport(["dead-1"], [released.id], [poisoned.id], ["q"], dry_run=False)


async def test_only_one_sweeper_acts_at_a_time(
    database_url: str, own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(own_pool, "t")
    await _dead(conn, "dead-1")
    await _claim(conn, job.id, "dead-1")

    # While another sweeper holds the lock, a sweep skips without looking.
    async with conn.transaction():
        await conn.execute(
            "select pg_advisory_xact_lock($1::int, hashtext($2::text || ':sweep'))", ADVISORY_LOCK_CLASS, SCHEMA.name
        )
        assert await sweep(own_pool, SCHEMA) == SweepReport([], [], [], [], dry_run=False, skipped=True)
    assert (await _job(conn, job.id))["locked_by"] == "dead-1"

    # Racing sweeps: one rescues, the other either skips or (if it started after the commit) finds nothing.
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        reports = await asyncio.gather(*(sweep(c, SCHEMA) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    acting = [r for r in reports if r.dead_workers]
    assert len(acting) == 1, reports
    assert acting[0].released_jobs == [job.id]
    assert await conn.fetchval(f"select recoveries from {RECOVERIES} where job_id = $1", job.id) == 1


async def test_late_writes_of_the_dead_claim_change_nothing(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    queries = WorkerQueries.for_schema(SCHEMA)
    job = await add_job(own_pool, "t", queue_name="q")
    await _dead(conn, "slow-1")
    old_locked_at = await _claim(conn, job.id, "slow-1")
    await sweep(own_pool, SCHEMA)
    # The same (not dead after all) worker claims the job again: the first claim's results must still miss.
    await _claim(conn, job.id, "slow-1")
    before = await _snapshot(conn)

    completed = await conn.fetch(queries.complete_jobs, [job.id], "slow-1", [old_locked_at])
    failed = await conn.fetch(
        queries.fail_jobs,
        [job.id],
        ["late error"],
        [None],
        [False],
        [None],
        "slow-1",
        [old_locked_at],
        [1],
        [None],
        [None],
        [None],
    )
    kept = await conn.fetch(
        queries.complete_jobs_keeping_results,
        [job.id],
        "slow-1",
        [old_locked_at],
        ["succeeded"],
        ["1"],
        [None],
        [0.1],
        [60.0],
    )
    returned = await conn.fetch(queries.return_jobs, [job.id], "slow-1", [old_locked_at])

    assert (completed, failed, kept, returned) == ([], [], [], [])
    assert await _snapshot(conn) == before
    assert await conn.fetchval("select count(*) from graphile_worker.backfill_job_results") == 0


async def test_a_job_completed_while_the_sweep_waits_for_its_lock_is_not_released(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    queries = WorkerQueries.for_schema(SCHEMA)
    job = await add_job(own_pool, "t")
    await _dead(conn, "slow-1")
    locked_at = await _claim(conn, job.id, "slow-1")

    completer = await own_pool.acquire()
    try:
        async with completer.transaction():
            assert len(await completer.fetch(queries.complete_jobs, [job.id], "slow-1", [locked_at])) == 1
            running = asyncio.create_task(sweep(own_pool, SCHEMA))
            # The sweep is now blocked on the job's row lock, held by the uncommitted completion.
            await wait_for(
                lambda: conn.fetchval(
                    "select count(*) from pg_stat_activity where datname = current_database()"
                    " and wait_event_type = 'Lock' and query like '%for update%'"
                ),
                timeout=5,
                message="sweep waiting for the job's row lock",
            )
        report = await asyncio.wait_for(running, 10)
    finally:
        await own_pool.release(completer)

    assert report == SweepReport(["slow-1"], [], [], [], dry_run=False)
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0
    assert await conn.fetchval(f"select count(*) from {RECOVERIES}") == 0


async def test_recovery_counts_of_vanished_jobs_are_forgotten(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(own_pool, "t")
    await conn.execute(f"insert into {RECOVERIES} values ($1, 2, now(), 'w'), (9999999, 1, now(), 'w')", job.id)

    await sweep(own_pool, SCHEMA)

    assert await conn.fetchval(f"select array_agg(job_id) from {RECOVERIES}") == [job.id]


async def test_sweeping_periodically_survives_errors_and_emits_what_it_recovered(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    seen: list[Event] = []
    events.on("sweep:recovered", seen.append)
    job = await add_job(own_pool, "t", queue_name="q")
    await _dead(conn, "dead-1")
    await _claim(conn, job.id, "dead-1")
    # Every sweep fails with "relation does not exist" until the table is back.
    await conn.execute(f"alter table {WORKERS} rename to backfill_workers_away")
    task = asyncio.create_task(
        sweep_periodically(
            own_pool, SCHEMA, interval=(0.01, 0.02), max_recoveries=3, events=events, worker_id="sweeper-1"
        )
    )
    try:

        async def failure_logged() -> bool:
            return any(
                "sweeping dead workers failed" in r.getMessage() and r.levelno == logging.WARNING
                for r in caplog.records
            )

        await wait_for(failure_logged, timeout=5, message="sweep failure logged")
        await conn.execute("alter table graphile_worker.backfill_workers_away rename to backfill_workers")

        async def recovered() -> bool:
            return bool(seen)

        await wait_for(recovered, timeout=5, message="sweep:recovered emitted")
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert [event.data for event in seen] == [
        {
            "worker_id": "sweeper-1",
            "dead_workers": ["dead-1"],
            "released_jobs": [job.id],
            "poisoned_jobs": [],
            "released_queues": ["q"],
        }
    ]
    assert any("dead-1" in r.getMessage() and "declared dead" in r.getMessage() for r in caplog.records)


async def test_what_a_worker_claims_after_being_declared_dead_is_released_by_the_next_sweep(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    """The window between a sweep declaring a worker dead and its next heartbeat telling it: if it claims a
    job then and dies for good, the job must not wait for Graphile's four hours."""
    first = await add_job(own_pool, "t")
    late = await add_job(own_pool, "t")
    await _dead(conn, "dead-1")
    await _claim(conn, first.id, "dead-1")
    assert (await sweep(own_pool, SCHEMA)).released_jobs == [first.id]

    await _claim(conn, late.id, "dead-1")  # it had not heard yet
    report = await sweep(own_pool, SCHEMA)

    assert report.dead_workers == ["dead-1"] and report.released_jobs == [late.id]
    assert (await _job(conn, late.id))["locked_by"] is None
    # With nothing new taken, an already-declared worker is not reported again.
    assert (await sweep(own_pool, SCHEMA)).recovered_anything is False


async def test_rows_of_workers_declared_dead_an_hour_ago_are_deleted(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await _dead(conn, "long-gone")
    await _dead(conn, "just-died")
    await conn.execute(
        f"update {WORKERS} set declared_dead_at = now() - interval '61 minutes' where worker_id = $1", "long-gone"
    )

    await sweep(own_pool, SCHEMA)

    assert await conn.fetchval(f"select array_agg(worker_id) from {WORKERS}") == ["just-died"]
