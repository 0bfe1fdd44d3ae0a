"""Pauses and cancellations across processes: two `backfill run` runners, controlled from this test process.

The propagation bound is the runners' poll (BACKFILL_CONTROL_POLL_SECONDS, 1 s by default); a notification
usually brings it down to milliseconds. "Paused work does not start" is checked over that bound after the last
runner applied the pause (each logs "pauses in force" as it does), with work of another task enqueued behind the
paused job and finished in the meantime.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.control import CancelOutcome, CancelState, cancel_jobs, cancellations, pause, resume
from backfill.core import SchemaName
from backfill.migrations import migrate_all
from tests.integration.worker_support.processes import RunnerProcess, runner_environment
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"
POLL_SECONDS = 1.0


@pytest.fixture
async def runners(database_url: str, pool: asyncpg.Pool[Any]) -> AsyncIterator[list[RunnerProcess]]:
    await migrate_all(pool, SCHEMA)
    env = runner_environment(
        database_url,
        BACKFILL_CONTROL_POLL_SECONDS=str(POLL_SECONDS),
        BACKFILL_LOG_LEVEL="INFO",
    )
    env.update(
        BACKFILL_TASK_MODULES="tests.integration.worker_support.control_tasks",
        POLL_INTERVAL_MS="2000",  # wake-ups come from NOTIFY; the slow poll keeps them honest
    )
    started = [await RunnerProcess.start("backfill run", env) for _ in range(2)]
    try:
        for runner in started:
            await runner.wait_for_output("backfill runner started")
        yield started
    finally:
        for runner in started:
            await runner.kill()


def _files(directory: Path, name: str, event: str) -> Path:
    return directory / f"{name}.{event}"


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


def _written_at(path: Path) -> float:
    return float(path.read_text().split()[0])


async def test_a_pause_holds_work_in_both_runners_and_a_resume_releases_it(
    runners: list[RunnerProcess], pool: asyncpg.Pool[Any], tmp_path: Path
) -> None:
    await pause(pool, SCHEMA, task="control.record", by="test")
    for runner in runners:
        await runner.wait_for_output("pauses in force: task control.record", within=POLL_SECONDS + 5)
    client = BackfillClient(pool)
    held = [await client.enqueue_bulk("control.record", {"dir": str(tmp_path), "name": f"held{i}"}) for i in range(4)]
    await client.enqueue_bulk("control.hang", {"dir": str(tmp_path), "name": "free"})  # another task: runs
    await wait_for(lambda: _exists(_files(tmp_path, "free", "started")), timeout=10)
    # Over the propagation bound and more, nothing paused starts in either runner. A claim is not an event this
    # process can wait for, so absence is checked over a window: two polls of every runner.
    await asyncio.sleep(2 * POLL_SECONDS)
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("held*")))
    locked = await pool.fetchval(
        f"select count(*) from {JOBS} where id = any($1) and locked_by is not null", [j.id for j in held]
    )
    assert locked == 0

    resumed_at = time.time()
    await resume(pool, SCHEMA, task="control.record")

    async def all_finished() -> bool:
        return all([await _exists(_files(tmp_path, f"held{i}", "finished")) for i in range(4)])

    await wait_for(all_finished, timeout=POLL_SECONDS + 10)
    latest_start = max(_written_at(_files(tmp_path, f"held{i}", "started")) for i in range(4))
    assert latest_start - resumed_at < POLL_SECONDS + 2


@pytest.mark.parametrize("task", ["control.hang", "control.hang_sync"])
async def test_a_running_job_is_cancelled_in_the_process_that_runs_it(
    runners: list[RunnerProcess], pool: asyncpg.Pool[Any], tmp_path: Path, task: str
) -> None:
    job = await BackfillClient(pool).enqueue_bulk(task, {"dir": str(tmp_path), "name": "long"}, max_attempts=3)
    await wait_for(lambda: _exists(_files(tmp_path, "long", "started")), timeout=10)
    asked_at = time.time()
    [answer] = await cancel_jobs(pool, SCHEMA, [job.id], by="test", reason="operator")
    assert answer.outcome is CancelOutcome.REQUESTED
    await wait_for(lambda: _exists(_files(tmp_path, "long", "cancelled")), timeout=POLL_SECONDS + 5)
    assert _written_at(_files(tmp_path, "long", "cancelled")) - asked_at < POLL_SECONDS + 1

    async def recorded() -> bool:
        [found] = await cancellations(pool, SCHEMA, job_ids=[job.id])
        return found.state is CancelState.CANCELLED

    await wait_for(recorded, timeout=POLL_SECONDS + 5)
    assert await pool.fetchval(f"select count(*) from {JOBS} where id = $1", job.id) == 0
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_dlq") == 0
    assert not _files(tmp_path, "long", "finished").exists()
