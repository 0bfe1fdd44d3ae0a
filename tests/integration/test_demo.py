"""The README's first command: ``python -m backfill demo`` processes real jobs through every lane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_demo_runs_every_lane_retries_and_dead_letters(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    result = subprocess.run(  # noqa: ASYNC221 - the test has nothing else to do meanwhile
        [sys.executable, "-m", "backfill", "demo", "--jobs", "40"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for lane in ("fast", "bulk", "reports"):
        assert f"lane {lane}" in result.stdout
    assert "demo.flaky_webhook (after retry)             1" in result.stdout
    assert "dead-letter queue: #" in result.stdout
    assert await pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0
    dead = await pool.fetch("select task_identifier, reason from graphile_worker.backfill_dlq")
    assert [(row["task_identifier"], row["reason"]) for row in dead] == [("demo.import_file", "permanent_failure")]
