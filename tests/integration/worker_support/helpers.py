"""Small helpers for driving a real worker against a per-test database.

Everything here reads or writes the database directly (never through the worker under test), so the tests
check what the worker really left behind rather than what it believes it did.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.worker import Worker
from tests.support.waiting import wait_for

JOBS_VIEW = "graphile_worker.jobs"
JOBS_TABLE = "graphile_worker._private_jobs"
QUEUES_TABLE = "graphile_worker._private_job_queues"


def fast_options(**overrides: Any) -> WorkerOptions:
    """Options for tests: quick polling and a short grace period unless a test says otherwise."""
    settings: dict[str, Any] = {"concurrency": 4, "poll_interval": 0.05, "shutdown_grace_period": 5.0}
    settings.update(overrides)
    return WorkerOptions(**settings)


async def job_row(conn: asyncpg.Connection[Any], job_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"select * from {JOBS_VIEW} where id = $1", job_id)


async def job_count(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(f"select count(*) from {JOBS_TABLE}"))


async def rows_locked_by(conn: asyncpg.Connection[Any], worker_id: str) -> int:
    """Jobs and queues still locked by ``worker_id``: zero after any clean stop."""
    return int(
        await conn.fetchval(
            f"select (select count(*) from {JOBS_TABLE} where locked_by = $1)"
            f" + (select count(*) from {QUEUES_TABLE} where locked_by = $1)",
            worker_id,
        )
    )


async def listener_pids(conn: asyncpg.Connection[Any]) -> list[int]:
    """Backends of this database whose last statement was a LISTEN: the worker's listener connection."""
    rows = await conn.fetch(
        "select pid from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid() and query ilike 'listen %'"
    )
    return [int(row["pid"]) for row in rows]


@contextlib.asynccontextmanager
async def running(worker: Worker, *, timeout: float = 10.0) -> AsyncIterator[asyncio.Task[RunSummary]]:  # noqa: ASYNC109
    """Run ``worker.run()`` in the background; on exit stop it (once: gracefully) and wait for it.

    The task is yielded so a test can call ``worker.stop()`` itself and await the summary; on exit, a task
    that already finished is not stopped again (a second ``stop()`` would mean "stop now").
    """
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        if not task.done():
            worker.stop()
        # Awaiting the task also surfaces a worker crash in the test that caused it.
        await asyncio.wait_for(task, timeout)


async def wait_listening(conn: asyncpg.Connection[Any], *, exclude: tuple[int, ...] = ()) -> int:
    """Wait until a LISTEN connection (other than ``exclude``) is up; return its backend pid."""

    async def new_listener() -> int | None:
        pids = [pid for pid in await listener_pids(conn) if pid not in exclude]
        return pids[0] if pids else None

    return await wait_for(new_listener, timeout=10, message="the worker's LISTEN connection")
