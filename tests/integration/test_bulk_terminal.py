"""Bulk actions on a terminal: ``--all`` asks first, and progress shows on a terminal and never in a pipe.

Real ``python -m backfill`` processes whose stdin and stderr are a pseudo-terminal (the ``pty`` module), or
pipes; stdout always goes to a file, as a script would read it.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_FAILURE, EXIT_OK
from tests.integration.test_bulk_actions import make_entries
from tests.integration.test_cli import REPO_ROOT, cli_environment
from tests.integration.test_dlq_support import DLQ, JOBS, installed

PROCESS_TIMEOUT = 30.0  # interpreter start-up and imports on a loaded machine, plus a few batches


class Finished:
    def __init__(self, code: int, stdout: str, terminal: str, stderr: str) -> None:
        self.code, self.stdout, self.terminal, self.stderr = code, stdout, terminal, stderr


def run_backfill(
    args: Sequence[str], database_url: str, *, answer: str | None = None, stderr_on_terminal: bool = True
) -> Finished:
    """Run ``backfill ARGS`` with stdin on a pseudo-terminal (and stderr too, unless told otherwise); when
    ``answer`` is given, type it once the terminal shows the question. Blocking: call through to_thread."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "backfill", *args],
            stdin=slave,
            stdout=stdout,
            stderr=slave if stderr_on_terminal else subprocess.PIPE,
            env=cli_environment(database_url),
            cwd=REPO_ROOT,
        )
        os.close(slave)
        deadline = time.monotonic() + PROCESS_TIMEOUT
        seen = b""
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: every process holding the terminal has closed it
                        chunk = b""
                    if not chunk:
                        break
                    seen += chunk
                    if answer is not None and b"[y/N]" in seen:
                        os.write(master, answer.encode() + b"\n")
                        answer = None
                elif process.poll() is not None:
                    break
            code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            stderr = process.stderr.read().decode() if process.stderr else ""
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(master)
        stdout.seek(0)
        return Finished(code, stdout.read().decode(), seen.decode(errors="replace"), stderr)


@pytest.fixture
async def dlq_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return await installed(pool)


async def test_all_on_a_terminal_answered_no_changes_nothing(database_url: str, dlq_pool: asyncpg.Pool[Any]) -> None:
    await make_entries(dlq_pool, 5)

    done = await asyncio.to_thread(run_backfill, ["dlq", "requeue", "--all"], database_url, answer="n")

    assert "requeue 5 entries? [y/N]" in done.terminal
    assert (done.code, done.stdout) == (EXIT_FAILURE, ""), done.terminal
    assert "nothing was changed" in done.terminal
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 0
    assert await dlq_pool.fetchval(f"select count(*) from {DLQ} where state = 'dead'") == 5


async def test_all_on_a_terminal_answered_yes_proceeds(database_url: str, dlq_pool: asyncpg.Pool[Any]) -> None:
    await make_entries(dlq_pool, 5)

    done = await asyncio.to_thread(run_backfill, ["dlq", "delete", "--all"], database_url, answer="y")

    assert "delete 5 entries? [y/N]" in done.terminal
    assert done.code == EXIT_OK, done.terminal
    assert done.stdout.startswith("deleted 5 entries")
    assert await dlq_pool.fetchval(f"select count(*) from {DLQ}") == 0


async def test_progress_shows_on_a_terminal_and_never_in_a_pipe(database_url: str, dlq_pool: asyncpg.Pool[Any]) -> None:
    await make_entries(dlq_pool, 2500, task="shown")
    await make_entries(dlq_pool, 2500, task="piped")
    command = ["dlq", "requeue", "--batch-size", "1000", "--task"]

    shown = await asyncio.to_thread(run_backfill, [*command, "shown"], database_url)
    piped = await asyncio.to_thread(run_backfill, [*command, "piped"], database_url, stderr_on_terminal=False)

    assert (shown.code, shown.stdout) == (EXIT_OK, "requeued 2500 entries in 3 batches\n"), shown.terminal
    assert "1000/2500" in shown.terminal and "2500/2500" in shown.terminal
    assert (piped.code, piped.stdout) == (EXIT_OK, "requeued 2500 entries in 3 batches\n"), piped.stderr
    assert piped.stderr == "" and piped.terminal == ""
