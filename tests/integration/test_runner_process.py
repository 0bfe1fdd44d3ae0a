"""``backfill run`` as a container's main process: configured from the environment, JSON logs with job
fields, /metrics served, SIGTERM a clean exit 0, a bad variable exit 2 naming it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from backfill.client.async_client import BackfillClient
from tests.integration.worker_support.processes import RunnerProcess
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env.update(
        DATABASE_URL=database_url,
        BACKFILL_TASK_MODULES="tests.integration.worker_support.runner_tasks",
        BACKFILL_LOG_FORMAT="json",
        POLL_INTERVAL_MS="100",
        BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS="0.2",
        **extra,
    )
    return env


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
            return str(response.read().decode())
    except OSError:
        return None


async def test_run_serves_metrics_logs_json_and_exits_0_on_sigterm(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backfill",
        "run",
        "--env-file",
        os.devnull,
        cwd=REPO_ROOT,
        env=_environment(database_url, BACKFILL_METRICS_PORT=str(port), BACKFILL_METRICS_HOST="127.0.0.1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: asyncio.to_thread(_scrape, port), timeout=20)
        client = BackfillClient(pool)
        await client.enqueue_fast("runner.echo", {"n": 1})
        # This process did not import the task module, so it names the policy itself: 3 attempts, ~0.3 s.
        broken = await client.enqueue_bulk("runner.broken", {"n": 2}, retry_policy="fast")
        await wait_for(
            lambda: pool.fetchval("select count(*) = 1 from graphile_worker.backfill_dlq where job_id = $1", broken.id),
            timeout=20,
        )

        async def scraped_counts() -> str | None:
            text = await asyncio.to_thread(_scrape, port)
            wanted = 'backfill_jobs_succeeded_total{lane="fast",priority_band="fast_default",task="runner.echo"} 1.0'
            return text if text is not None and wanted in text else None

        text = await wait_for(scraped_counts, timeout=10)
        assert (
            'backfill_jobs_dead_lettered_total{lane="bulk",priority_band="bulk_default",task="runner.broken"} 1.0'
            in text
        )
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stderr is not None and process.stdout is not None
    stderr = (await process.stderr.read()).decode()
    stdout = (await process.stdout.read()).decode()
    assert code == 0, stderr
    assert "succeeded=1" in stdout
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line.get("task") == "runner.broken" and line.get("level") == "warning"]
    assert failures, stderr[-2000:]
    assert {"job_id", "task", "attempt", "lane"} <= set(failures[0])
    assert failures[0]["lane"] == "bulk"
    assert "payload" not in failures[0]
    # A success leaves a trace too: one line with the job's fields and its duration.
    successes = [line for line in lines if line.get("logger") == "backfill.jobs" and line.get("task") == "runner.echo"]
    assert len(successes) == 1, stderr[-2000:]
    assert successes[0]["level"] == "info"
    assert successes[0]["lane"] == "fast" and successes[0]["attempt"] == 1
    assert isinstance(successes[0]["job_id"], int) and successes[0]["duration_seconds"] >= 0
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


async def test_a_bad_variable_stops_start_up_with_exit_2_naming_it(database_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backfill",
        "run",
        "--env-file",
        os.devnull,
        cwd=REPO_ROOT,
        env=_environment(database_url, FAST_QUEUE_CONCURRENCY="ten"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    assert "FAST_QUEUE_CONCURRENCY" in stderr.decode() + stdout.decode()


async def test_runner_main_is_the_container_entry_point(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    # WorkerRunner.from_env().run() through backfill.runner.main(): blocking, signals, exit code.
    runner = await RunnerProcess.start("runner.main()", _environment(database_url))
    try:
        job = await BackfillClient(pool).enqueue_fast("runner.echo", {})

        async def job_done() -> bool:
            if runner.process.returncode is not None:
                raise AssertionError(f"exited {runner.process.returncode}:\n{runner.output[-3000:]}")
            return bool(await pool.fetchval(f"select count(*) = 0 from {JOBS} where id = $1", job.id))

        try:
            await wait_for(job_done, timeout=20)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{runner.output[-3000:]}") from None
        runner.send(signal.SIGINT)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == 0, runner.output[-3000:]
