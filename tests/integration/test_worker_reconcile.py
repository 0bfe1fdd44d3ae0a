"""Lock reconciliation: after a reconnect, rows locked by this worker that it does not own (a claim committed
whose reply was lost) are released with their attempt refunded; rows it is really running are left alone.

A lost claim reply is simulated by locking rows in this worker's name directly, then killing the worker's
LISTEN connection so that it reconnects.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.events import Event, Events
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import (
    JOBS_TABLE,
    QUEUES_TABLE,
    fast_options,
    job_row,
    rows_locked_by,
    running,
    wait_listening,
)
from tests.support.waiting import wait_for, wait_for_event


async def orphan(conn: asyncpg.Connection[Any], job_id: int, worker_id: str, *, run_now: bool) -> None:
    """Lock a job and its named queue in ``worker_id``'s name, as a claim whose reply never arrived would."""
    run_at = "now()" if run_now else "run_at"
    await conn.execute(
        f"update {JOBS_TABLE} set locked_by = $2, locked_at = now(), attempts = attempts + 1, run_at = {run_at}"
        " where id = $1",
        job_id,
        worker_id,
    )
    await conn.execute(
        f"update {QUEUES_TABLE} set locked_by = $2, locked_at = now()"
        f" where id = (select job_queue_id from {JOBS_TABLE} where id = $1)",
        job_id,
        worker_id,
    )


async def force_reconnect(conn: asyncpg.Connection[Any]) -> None:
    pid = await wait_listening(conn)
    await conn.execute("select pg_terminate_backend($1)", pid)
    await wait_listening(conn, exclude=(pid,))


def reconciled_events() -> tuple[Events, list[Event], asyncio.Event]:
    events = Events()
    seen: list[Event] = []
    done = asyncio.Event()

    def on_reconciled(event: Event) -> None:
        seen.append(event)
        done.set()

    events.on("worker:reconciled", on_reconciled)
    return events, seen, done


async def queue_owner(conn: asyncpg.Connection[Any], name: str) -> str | None:
    owner: str | None = await conn.fetchval(f"select locked_by from {QUEUES_TABLE} where queue_name = $1", name)
    return owner


async def test_an_orphaned_claim_is_released_after_a_reconnect_and_then_run(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    attempts_seen: list[int] = []
    ran = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("work")
    async def work(payload: dict[str, Any], ctx: JobContext) -> None:
        attempts_seen.append(ctx.attempt)
        ran.set()

    events, seen, reconciled = reconciled_events()
    # In the future, so the worker cannot claim it before the test locks it in the worker's name.
    job = await add_job(pool, "work", queue_name="lost-q", run_at=_far_future())
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=1), events=events)
    async with running(worker) as run:
        await wait_listening(conn)
        await orphan(conn, job.id, worker.worker_id, run_now=True)
        locked = await job_row(conn, job.id)
        assert locked is not None
        assert (locked["locked_by"], locked["attempts"]) == (worker.worker_id, 1)
        assert await queue_owner(conn, "lost-q") == worker.worker_id

        await force_reconnect(conn)
        await wait_for_event(reconciled, timeout=5, message="worker:reconciled after the reconnect")
        await wait_for_event(ran, timeout=5, message="the released job runs")
        await wait_for(lambda: _deleted(conn, job.id), timeout=5, message="the released job completes")
        worker.stop()
        summary = await asyncio.wait_for(run, 10)

    assert [event["released"] for event in seen] == [[job.id]]
    assert seen[0]["worker_id"] == worker.worker_id
    assert attempts_seen == [1]  # the lost claim's attempt was refunded before the real one
    assert (summary.succeeded, summary.failed, summary.lost_leases) == (1, 0, 0)
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_a_job_the_worker_is_running_is_not_released_by_reconciliation(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("hold")
    async def hold(payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    @registry.task("work")
    async def work(payload: dict[str, Any]) -> None:
        return None

    events, seen, reconciled = reconciled_events()
    lost = await add_job(pool, "work", queue_name="lost-q", run_at=_far_future())
    held = await add_job(pool, "hold", queue_name="held-q")
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=1), events=events)
    try:
        async with running(worker) as run:
            await wait_for_event(started, timeout=5, message="the held job starts")
            # Left in the future: once released it stays put, so its row can be checked without a race.
            await orphan(conn, lost.id, worker.worker_id, run_now=False)

            await force_reconnect(conn)
            await wait_for_event(reconciled, timeout=5, message="worker:reconciled after the reconnect")

            held_row = await job_row(conn, held.id)
            assert held_row is not None
            assert (held_row["locked_by"], held_row["attempts"]) == (worker.worker_id, 1)
            assert await queue_owner(conn, "held-q") == worker.worker_id
            lost_row = await job_row(conn, lost.id)
            assert lost_row is not None
            assert (lost_row["locked_by"], lost_row["locked_at"], lost_row["attempts"]) == (None, None, 0)
            assert await queue_owner(conn, "lost-q") is None

            release.set()
            await wait_for(lambda: _deleted(conn, held.id), timeout=5, message="the held job completes")
            worker.stop()
            summary = await asyncio.wait_for(run, 10)
    finally:
        release.set()

    assert [event["released"] for event in seen] == [[lost.id]]
    assert (summary.succeeded, summary.lost_leases) == (1, 0)
    assert await rows_locked_by(conn, worker.worker_id) == 0


async def test_a_reconnect_with_nothing_orphaned_releases_nothing(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("hold")
    async def hold(payload: dict[str, Any]) -> None:
        started.set()
        await release.wait()

    events, seen, _ = reconciled_events()
    fetches_after_reconnect: list[Event] = []
    held = await add_job(pool, "hold", queue_name="held-q")
    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=2), events=events)
    try:
        async with running(worker) as run:
            await wait_for_event(started, timeout=5, message="the held job starts")
            await force_reconnect(conn)
            # The fetcher reconciles before its next fetch: two empty fetches after the reconnect (one might
            # have been in flight already) prove it ran.
            events.on("worker:getJob:empty", fetches_after_reconnect.append)

            async def two_fetches() -> bool:
                return len(fetches_after_reconnect) >= 2

            await wait_for(two_fetches, timeout=5, message="two fetches after the reconnect")
            held_row = await job_row(conn, held.id)
            assert held_row is not None
            assert (held_row["locked_by"], held_row["attempts"]) == (worker.worker_id, 1)
            release.set()
            await wait_for(lambda: _deleted(conn, held.id), timeout=5, message="the held job completes")
            worker.stop()
            summary = await asyncio.wait_for(run, 10)
    finally:
        release.set()

    assert seen == []  # nothing released, so no event
    assert (summary.succeeded, summary.lost_leases) == (1, 0)


def _far_future() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


async def _deleted(conn: asyncpg.Connection[Any], job_id: int) -> bool:
    return await job_row(conn, job_id) is None
