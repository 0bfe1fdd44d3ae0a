"""The README's first command: ``python -m backfill demo`` processes real jobs through every lane, and tells its
story to a newcomer: one line per deliberate failure, no traceback, no warning that is not the demo's, and a
closing hint that works as printed."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

REPO_ROOT = Path(__file__).resolve().parents[2]


def _demo(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backfill", "demo", "--jobs", "40"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _assert_reads_cleanly(output: str) -> None:
    """No traceback, no Python warning; each staged failure is told on one line (the next one is not the start
    of a traceback or a continuation)."""
    assert "Traceback" not in output, output
    assert "Warning" not in output, output  # warning classes (RuntimeDirWarning, ...); log levels are WARNING
    for staged in ("(demo.flaky_webhook) failed on attempt 1", "(demo.import_file) failed on attempt 1"):
        lines = [n for n, line in enumerate(output.splitlines()) if staged in line]
        assert len(lines) == 1, output
        following = output.splitlines()[lines[0] + 1]
        assert not following.startswith((" ", "\t")), following


async def test_demo_runs_every_lane_retries_and_dead_letters(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    result = _demo({**os.environ, "DATABASE_URL": database_url})
    assert result.returncode == 0, result.stdout + result.stderr
    for lane in ("fast", "bulk", "reports"):
        assert f"lane {lane}" in result.stdout
    assert "demo.flaky_webhook (after retry)             1" in result.stdout
    assert "dead-letter queue: #" in result.stdout
    _assert_reads_cleanly(result.stdout + result.stderr)
    assert await pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0
    dead = await pool.fetch("select task_identifier, reason from graphile_worker.backfill_dlq")
    assert [(row["task_identifier"], row["reason"]) for row in dead] == [("demo.import_file", "permanent_failure")]

    # The closing hint names a command; run it exactly as printed, from where the demo ran.
    hint = re.search(r"waits in the dead-letter queue: `([^`]+)`", result.stdout)
    assert hint is not None, result.stdout
    listed = subprocess.run(  # noqa: ASYNC221 - the test has nothing else to do meanwhile
        shlex.split(hint.group(1)),
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "demo.import_file" in listed.stdout and "not a CSV file" in listed.stdout


def test_demo_on_the_embedded_postgres_reads_cleanly_and_hints_at_what_still_works() -> None:
    # As on CI and in containers: no DATABASE_URL, no XDG_RUNTIME_DIR.
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "XDG_RUNTIME_DIR"}}
    result = _demo(env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "dead-letter queue: #" in result.stdout
    _assert_reads_cleanly(output)
    socket_dir = re.search(r"database: \S+\?host=(\S+)", result.stdout)
    assert socket_dir is not None, result.stdout
    assert not Path(socket_dir.group(1)).exists()  # the server and its data were deleted on exit ...
    # ... so the hint must not send the reader to a dead-letter queue that no longer exists.
    assert "waits in the dead-letter queue" not in result.stdout
    assert "embedded PostgreSQL is gone" in result.stdout
    assert re.search(r"`DATABASE_URL=postgresql://\.\.\. \S+ -m backfill demo`", result.stdout), result.stdout
