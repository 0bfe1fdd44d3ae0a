"""``backfill run`` with BACKFILL_PROCESSES=2: a supervisor and two worker processes, real processes and real
signals. The processes share the jobs and one endpoint counts them all; SIGTERM lets every running job finish
and exits 0, a second one stops at once; a SIGKILLed process is restarted and its job recovered; processes
that keep dying make the supervisor give up with exit 1; a SIGKILLed supervisor leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.runner.supervisor import free_loopback_port
from tests.integration.worker_support.processes import ENTRY_POINTS, REPO_ROOT, RunnerProcess, runner_environment
from tests.integration.worker_support.shutdown_tasks import LEDGER_DDL
from tests.support.processes import run_python
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
# Short crash-recovery timings, as the chaos tests use: a killed process's jobs are released within ~2 s.
FAST_RECOVERY = {
    "BACKFILL_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    "BACKFILL_DEAD_WORKER_AFTER_SECONDS": "1.5",
    "BACKFILL_SWEEP_INTERVAL_SECONDS": "0.5",
}


@pytest.fixture
async def ledger(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await pool.execute(LEDGER_DDL)
    return pool


def _environment(database_url: str, port: int, **extra: str) -> dict[str, str]:
    # One slot per lane and process: a process claims one slow job at a time, so two jobs go to two processes.
    return runner_environment(
        database_url,
        BACKFILL_PROCESSES="2",
        FAST_QUEUE_CONCURRENCY="1",
        BULK_QUEUE_CONCURRENCY="1",
        BACKFILL_METRICS_PORT=str(port),
        BACKFILL_METRICS_HOST="127.0.0.1",
        **extra,
    )


def _get(port: int, path: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None


async def _ready(port: int) -> bool:
    answer = await asyncio.to_thread(_get, port, "/readyz")
    return answer is not None and answer[0] == 200


def _children(output: str) -> list[int]:
    """The pids of the worker processes the supervisor started so far, in order."""
    return [int(pid) for pid in re.findall(r"worker process \d started \(pid (\d+)\)", output)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie nobody reaped has ended all the same


async def _started_by(pool: asyncpg.Pool[Any], job_ids: list[int]) -> dict[int, int] | None:
    """job id → the pid that started it, once every job has started."""
    rows = await pool.fetch(
        "select job_id, pid from shutdown_ledger where event = 'start' and job_id = any($1)", job_ids
    )
    started = {row["job_id"]: row["pid"] for row in rows}
    return started if len(started) == len(job_ids) else None


async def _start(env: dict[str, str], port: int) -> RunnerProcess:
    runner = await RunnerProcess.start("backfill run", env)

    async def ready() -> bool:
        if runner.process.returncode is not None:
            raise AssertionError(f"exited {runner.process.returncode}:\n{runner.output[-3000:]}")
        return await _ready(port)

    await wait_for(ready, timeout=40, message="the supervisor's /readyz")
    return runner


async def test_processes_share_the_jobs_one_endpoint_counts_them_and_sigterm_lets_them_finish(
    database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    port = free_loopback_port()
    runner = await _start(_environment(database_url, port), port)
    try:
        client = BackfillClient(ledger)
        # First, while no lane has measured a throughput yet: each process claims one job for its one slot.
        slow = [await client.enqueue_fast("shutdown.sleep", {"seconds": 6}) for _ in range(2)]
        started = await wait_for(lambda: _started_by(ledger, [j.id for j in slow]), timeout=20)
        children = _children(runner.output)
        assert len(children) == 2
        assert set(started.values()) == set(children), "each process runs one of the two jobs"
        quick = [await client.enqueue_bulk("shutdown.quick", {}) for _ in range(10)]
        await wait_for(
            lambda: ledger.fetchval(f"select count(*) = 0 from {JOBS} where id = any($1)", [j.id for j in quick]),
            timeout=20,
        )

        async def metrics_count_them() -> str | None:
            answer = await asyncio.to_thread(_get, port, "/metrics")
            labels = 'lane="bulk",priority_band="bulk_default",task="shutdown.quick"'
            wanted = f"backfill_jobs_succeeded_total{{{labels}}} 10.0"
            return answer[1] if answer is not None and wanted in answer[1] else None

        text = await wait_for(metrics_count_them, timeout=10, message="the merged count of quick jobs")
        assert "backfill_worker_processes 2.0" in text
        assert 'backfill_busy_slots{lane="fast"} 2.0' in text  # one running job in each process
        assert 'backfill_lane_slots{lane="fast"} 2.0' in text
        assert text.count("# TYPE backfill_jobs_succeeded_total counter") == 1
        assert await asyncio.to_thread(_get, port, "/healthz") == (200, "ok\n")

        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    ended = await ledger.fetch("select job_id from shutdown_ledger where event = 'end'")
    assert {row["job_id"] for row in ended} == {job.id for job in slow}, "both finished within the grace period"
    assert await ledger.fetchval(f"select count(*) from {JOBS}") == 0
    assert await ledger.fetchval("select count(*) from graphile_worker.backfill_workers") == 0
    assert not any(_alive(pid) for pid in children)


async def test_a_second_sigterm_stops_running_jobs_at_once(database_url: str, ledger: asyncpg.Pool[Any]) -> None:
    port = free_loopback_port()
    runner = await _start(_environment(database_url, port, BACKFILL_SHUTDOWN_GRACE_SECONDS="60"), port)
    try:
        client = BackfillClient(ledger)
        jobs = [await client.enqueue_fast("shutdown.sleep", {"seconds": 60}) for _ in range(2)]
        await wait_for(lambda: _started_by(ledger, [j.id for j in jobs]), timeout=20)
        runner.send(signal.SIGTERM)
        await runner.wait_for_output("stopping the worker processes gracefully")
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=20)  # far less than the 60 s grace period
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert await ledger.fetchval("select count(*) from shutdown_ledger where event = 'end'") == 0
    rows = await ledger.fetch(f"select locked_by, last_error from {JOBS} where id = any($1)", [j.id for j in jobs])
    assert len(rows) == 2
    assert all(row["locked_by"] is None and row["last_error"].startswith("Interrupted") for row in rows), rows


async def test_a_sigkilled_process_is_restarted_and_its_job_runs_again(
    database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    port = free_loopback_port()
    runner = await _start(_environment(database_url, port, **FAST_RECOVERY), port)
    try:
        job = await BackfillClient(ledger).enqueue_fast("shutdown.sleep", {"seconds": 1})
        started = await wait_for(lambda: _started_by(ledger, [job.id]), timeout=20)
        victim = started[job.id]
        assert victim in _children(runner.output)
        os.kill(victim, signal.SIGKILL)

        async def restarted() -> bool:
            return len(_children(runner.output)) == 3

        await wait_for(restarted, timeout=20, message="a third worker process started")
        await wait_for(
            lambda: ledger.fetchval(
                f"select count(*) = 1 from shutdown_ledger where event = 'end'"
                f" and not exists (select 1 from {JOBS} where id = $1)",
                job.id,
            ),
            timeout=30,
            message="the killed process's job run again to its end, and recorded",
        )
        assert set(await ledger.fetchval("select array_agg(distinct pid) from shutdown_ledger")) - {victim}
        await wait_for(lambda: _ready(port), timeout=30, message="ready again with two processes")
        answer = await asyncio.to_thread(_get, port, "/metrics")
        assert answer is not None and "backfill_worker_process_restarts_total 1.0" in answer[1]
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert "killed by SIGKILL" in runner.output


async def test_processes_that_keep_dying_at_start_make_it_give_up_with_exit_1(database_url: str) -> None:
    # Nothing listens on port 1: every process fails to connect at once, and is restarted until it gives up.
    env = runner_environment(
        "postgresql://postgres:pw-never-shown@127.0.0.1:1/nowhere",
        BACKFILL_PROCESSES="2",
        BACKFILL_CONNECT_TIMEOUT_SECONDS="0",
    )
    finished = await run_python("-m", "backfill", "run", "--env-file", os.devnull, env=env, within=90)
    assert finished.code == 1, finished.output[-3000:]
    assert "giving up: worker process" in finished.output
    assert "died 5 times in a row" in finished.output
    assert len(re.findall(r"worker process \d \(pid \d+\) exited unexpectedly", finished.output)) >= 5
    assert "pw-never-shown" not in finished.output


async def test_a_sigkilled_supervisor_leaves_no_worker_process_behind(
    database_url: str, ledger: asyncpg.Pool[Any]
) -> None:
    port = free_loopback_port()
    runner = await _start(_environment(database_url, port), port)
    try:
        job = await BackfillClient(ledger).enqueue_fast("shutdown.sleep", {"seconds": 1})
        await wait_for(lambda: _started_by(ledger, [job.id]), timeout=20)
        children = _children(runner.output)
        runner.process.kill()
        await runner.process.wait()

        async def all_gone() -> bool:
            return not any(_alive(pid) for pid in children)

        await wait_for(all_gone, timeout=30, message="the worker processes stopped themselves")
    finally:
        await runner.kill()
    # They stopped gracefully: the running job finished, nothing is left locked or registered.
    assert await ledger.fetchval("select count(*) from shutdown_ledger where event = 'end'") == 1
    assert await ledger.fetchval(f"select count(*) from {JOBS}") == 0
    assert await ledger.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


@pytest.mark.parametrize("setting", [["--processes", "0"], ["BACKFILL_PROCESSES=0"]])
async def test_a_bad_process_count_is_exit_2_naming_it(database_url: str, setting: list[str]) -> None:
    env = runner_environment(database_url)
    argv = ["-m", "backfill", "run", "--env-file", os.devnull]
    if setting[0].startswith("BACKFILL_"):
        env["BACKFILL_PROCESSES"] = "0"
    else:
        argv += setting
    finished = await run_python(*argv, env=env, within=60)
    assert finished.code == 2, finished.output[-3000:]
    assert ("--processes" if setting[0] == "--processes" else "BACKFILL_PROCESSES") in finished.output


async def test_ctrl_c_to_the_whole_process_group_stops_gracefully(database_url: str, ledger: asyncpg.Pool[Any]) -> None:
    # A terminal's Ctrl-C signals every process of the foreground group. Worker processes in that group would
    # get SIGINT twice (the terminal's and the supervisor's), which means "stop now": they run in a session
    # of their own, so the running job still gets its grace period.
    port = free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *ENTRY_POINTS["backfill run"],
        cwd=REPO_ROOT,
        env=_environment(database_url, port, BACKFILL_SHUTDOWN_GRACE_SECONDS="60"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # the group a terminal would have made for it
    )
    runner = RunnerProcess(process)
    try:
        await wait_for(lambda: _ready(port), timeout=40, message="the supervisor's /readyz")
        job = await BackfillClient(ledger).enqueue_fast("shutdown.sleep", {"seconds": 2})
        await wait_for(lambda: _started_by(ledger, [job.id]), timeout=20)
        os.killpg(process.pid, signal.SIGINT)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert await ledger.fetchval("select count(*) from shutdown_ledger where event = 'end'") == 1
    assert await ledger.fetchval(f"select count(*) from {JOBS}") == 0


async def test_runner_main_supervises_too(database_url: str, ledger: asyncpg.Pool[Any]) -> None:
    # backfill.runner.main(), the other container entry point, honours BACKFILL_PROCESSES as `backfill run` does.
    port = free_loopback_port()
    runner = await RunnerProcess.start("runner.main()", _environment(database_url, port))
    try:
        await wait_for(lambda: _ready(port), timeout=40, message="the supervisor's /readyz")
        assert len(_children(runner.output)) == 2
        job = await BackfillClient(ledger).enqueue_fast("shutdown.quick", {})
        await wait_for(lambda: ledger.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job.id), timeout=20)
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert await ledger.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


async def test_one_process_serves_the_admin_api_for_all(database_url: str, ledger: asyncpg.Pool[Any]) -> None:
    """With BACKFILL_ADMIN_PORT and two processes, process 1 alone binds it: no process dies of a busy port."""
    port, admin_port = free_loopback_port(), free_loopback_port()
    runner = await _start(_environment(database_url, port, BACKFILL_ADMIN_PORT=str(admin_port)), port)
    try:

        async def overview() -> dict[str, Any] | None:
            answer = await asyncio.to_thread(_get, admin_port, "/api/overview")
            return json.loads(answer[1]) if answer is not None and answer[0] == 200 else None

        body = await wait_for(overview, timeout=20, message="the admin API of process 1")
        # Both processes' lanes are registered and counted, though one process serves the API.
        await wait_for(lambda: _slots_counted(admin_port), timeout=10)
        assert body["workers"]["dead"] == 0
        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
    assert len(_children(runner.output)) == 2, "no process was restarted: none died of a busy admin port"


async def _slots_counted(admin_port: int) -> bool:
    answer = await asyncio.to_thread(_get, admin_port, "/api/overview")
    if answer is None or answer[0] != 200:
        return False
    lanes = {lane["name"]: lane for lane in json.loads(answer[1])["lanes"]}
    return bool(lanes["fast"]["slots"] == 2 and lanes["bulk"]["slots"] == 2 and lanes["fast"]["workers"] == 2)
