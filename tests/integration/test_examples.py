"""The examples run as documented: enqueue with examples.enqueue, drain with the CLI worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_enqueue_example_then_worker_once_drains_everything(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    enqueued = _run(["-m", "examples.enqueue"], database_url)
    assert enqueued.returncode == 0, enqueued.stderr
    assert await pool.fetchval("select count(*) from graphile_worker.jobs") == 2

    worker = _run(["-m", "backfill", "worker", "--tasks", "examples.tasks", "--once"], database_url)
    assert worker.returncode == 0, worker.stderr
    # Two welcome emails succeeded, and each enqueued a fingerprint job that --once also ran.
    assert "succeeded=4 failed=0" in worker.stderr
    assert await pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0


async def test_example_payload_model_rejects_a_bad_address(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(
        'select graphile_worker.add_job(\'examples.send_welcome_email\', \'{"to": "nobody", "name": "N"}\')'
    )
    worker = _run(["-m", "backfill", "worker", "--tasks", "examples.tasks", "--once"], database_url)
    assert worker.returncode == 0, worker.stderr
    last_error = await pool.fetchval("select last_error from graphile_worker._private_jobs")
    assert last_error is not None and "to" in last_error and "examples.send_welcome_email" in last_error
