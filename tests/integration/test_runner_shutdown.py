"""Shutdown of a runner process, through each way applications run one: running jobs get
BACKFILL_SHUTDOWN_GRACE_SECONDS, a job that does not fit is interrupted at the grace period, a second signal
stops at once, and a signal at any moment of start-up ends in a clean exit (docs/how-to/deployment.md)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from tests.integration.worker_support.processes import ENTRY_POINTS, RunnerProcess, runner_environment
from tests.integration.worker_support.shutdown_tasks import LEDGER_DDL
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
# What a process needs beyond its grace period to exit: cancelling, recording results, closing the pool.
EXIT_MARGIN = 10.0


@pytest.fixture
async def ledger(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await pool.execute(LEDGER_DDL)
    return pool


async def _events(pool: asyncpg.Pool[Any], job_id: int) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "select attempt, event from shutdown_ledger where job_id = $1 order by at, event desc", job_id
    )
    return [(row["attempt"], row["event"]) for row in rows]


async def _started(pool: asyncpg.Pool[Any], job_id: int) -> bool:
    return (1, "start") in await _events(pool, job_id)


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
async def test_a_job_running_at_sigterm_finishes_and_the_process_exits_0(
    entry_point: str, database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    runner = await RunnerProcess.start(
        entry_point, runner_environment(database_url, BACKFILL_SHUTDOWN_GRACE_SECONDS="30")
    )
    try:
        await runner.wait_for_output("runner started")
        job = await BackfillClient(ledger).enqueue_fast("shutdown.sleep", {"seconds": 1.5})
        await wait_for(lambda: _started(ledger, job.id), timeout=20)
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    # It ran once, to its end, and was completed: no attempt burned, no interruption recorded.
    assert await _events(ledger, job.id) == [(1, "start"), (1, "end")]
    assert await ledger.fetchval(f"select count(*) from {JOBS} where id = $1", job.id) == 0
    assert await ledger.fetchval("select count(*) from graphile_worker.backfill_job_errors") == 0
    assert await ledger.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


async def test_a_job_longer_than_the_grace_period_is_interrupted_at_its_end(
    database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    grace = 1.0
    runner = await RunnerProcess.start(
        "backfill run", runner_environment(database_url, BACKFILL_SHUTDOWN_GRACE_SECONDS=str(grace))
    )
    try:
        await runner.wait_for_output("runner started")
        job = await BackfillClient(ledger).enqueue_fast("shutdown.sleep", {"seconds": 120})
        await wait_for(lambda: _started(ledger, job.id), timeout=20)
        signalled = time.monotonic()
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=grace + EXIT_MARGIN)
        took = time.monotonic() - signalled
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert took >= grace  # it waited for the grace period before interrupting
    # As documented (docs/architecture.md, Shutdown): failed with "Interrupted", due again at once, the attempt
    # counted, nothing left locked.
    row = await ledger.fetchrow(
        f"select attempts, locked_by, last_error, run_at <= now() as due from {JOBS} where id = $1", job.id
    )
    assert row is not None
    assert (row["attempts"], row["locked_by"], row["due"]) == (1, None, True)
    assert row["last_error"].startswith("Interrupted")
    assert await _events(ledger, job.id) == [(1, "start")]
    assert "interrupted=1" in runner.stdout


async def test_a_second_signal_stops_running_jobs_at_once(database_url: str, ledger: asyncpg.Pool[Any]) -> None:
    runner = await RunnerProcess.start(
        "backfill run", runner_environment(database_url, BACKFILL_SHUTDOWN_GRACE_SECONDS="300")
    )
    try:
        await runner.wait_for_output("runner started")
        job = await BackfillClient(ledger).enqueue_bulk("shutdown.sleep", {"seconds": 300})
        await wait_for(lambda: _started(ledger, job.id), timeout=20)
        runner.send(signal.SIGTERM)
        await runner.wait_for_output("stopping gracefully")
        runner.send(signal.SIGINT)
        code = await runner.exit_code(within=EXIT_MARGIN)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    last_error = await ledger.fetchval(f"select last_error from {JOBS} where id = $1 and locked_by is null", job.id)
    assert last_error is not None and last_error.startswith("Interrupted")


def _startup_iterations() -> int:
    # 12 in the ordinary run; BACKFILL_STARTUP_SIGNAL_ITERATIONS=50 (or more) for a soak of this test.
    return int(os.environ.get("BACKFILL_STARTUP_SIGNAL_ITERATIONS", "12"))


async def test_a_signal_at_any_moment_of_start_up_ends_in_a_clean_exit(
    database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    # Four lanes started one after the other widen the window in which a signal meets a lane half-started.
    env = runner_environment(database_url, BACKFILL_LANES="reports=1,exports=1", BACKFILL_SHUTDOWN_GRACE_SECONDS="5")
    client = BackfillClient(ledger)
    # How long start-up takes here, so that the signals below are spread over all of it.
    probe = await RunnerProcess.start("backfill run", env)
    began = time.monotonic()
    try:
        await probe.wait_for_output("runner started")
        start_up = time.monotonic() - began
        probe.send(signal.SIGTERM)
        assert await probe.exit_code(within=EXIT_MARGIN) == 0, probe.output[-3000:]
    finally:
        await probe.kill()

    rng = random.Random(20261203)
    iterations = _startup_iterations()
    for iteration in range(iterations):
        await client.enqueue_fast("shutdown.quick", {})
        await client.enqueue_bulk("shutdown.quick", {})
        entry_point = list(ENTRY_POINTS)[iteration % len(ENTRY_POINTS)]
        signum = signal.SIGINT if iteration % 4 < 2 else signal.SIGTERM
        runner = await RunnerProcess.start(entry_point, env)
        try:
            # The moment of the signal is what this test varies, so it waits on purpose: every other iteration
            # a moment spread over the whole start-up, evenly with some jitter; the others a moment just after
            # the first lane started, while the next lanes are starting (where a lane used to be left running).
            if iteration % 2 == 0:
                when = start_up * 1.1 * (iteration + rng.random()) / iterations
                await asyncio.sleep(when)
                where = f"{when:.2f} s into a {start_up:.2f} s start-up"
            else:
                await runner.wait_for_output("task(s), concurrency")
                when = rng.uniform(0, 0.05)
                await asyncio.sleep(when)
                where = f"{when * 1000:.0f} ms after the first lane started"
            caught = _catches_sigterm(runner.process.pid)
            swallowed = False
            runner.send(signum)
            try:
                code = await runner.exit_code(within=EXIT_MARGIN)
            except AssertionError:
                if caught or not _swallowed_by_the_interpreter(signum, runner.stderr):
                    raise
                # A Ctrl-C that CPython itself lost while importing, before any of backfill's code ran (see
                # below): the process started as if never signalled. A signal now must still stop it cleanly.
                swallowed = True
                runner.send(signal.SIGTERM)
                code = await runner.exit_code(within=EXIT_MARGIN)
        finally:
            await runner.kill()
        where = f"{entry_point}, {signum.name} {where}"
        if code != 0 and not caught:
            # Before the process reached backfill's code (the interpreter was still importing): the signal has
            # its default effect, as on any program (death, or Python's KeyboardInterrupt), having done nothing.
            interrupted = signum == signal.SIGINT and "KeyboardInterrupt" in runner.stderr
            assert code == -signum or interrupted, f"{where}: exit {code}\n{runner.output[-3000:]}"
        else:
            assert code == 0, f"{where}: exit {code}\n{runner.output[-3000:]}"
            # (A swallowed Ctrl-C leaves the interpreter's own "Exception ignored" traceback: not backfill's.)
            assert swallowed or "Traceback" not in runner.output, f"{where}\n{runner.output[-3000:]}"
        locked = await ledger.fetchval(f"select count(*) from {JOBS} where locked_by is not null")
        workers = await ledger.fetchval("select count(*) from graphile_worker.backfill_workers")
        assert (locked, workers) == (0, 0), where


def _swallowed_by_the_interpreter(signum: int, stderr: str) -> bool:
    """Python's default SIGINT handler raises KeyboardInterrupt wherever the interpreter is; when that is inside
    an import's lock clean-up (a weakref callback), CPython prints "Exception ignored in: ...
    _get_module_lock..." and drops the exception, and the program goes on. Seen here once in ~1,000 signals."""
    return signum == signal.SIGINT and "Exception ignored in" in stderr and "KeyboardInterrupt" in stderr


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a handler of its own for SIGTERM now (the kernel's view, /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
