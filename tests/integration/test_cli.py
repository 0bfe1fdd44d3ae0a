"""The command line, run as a real subprocess (``python -m backfill``) against the test database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.migrations.graphile import current_revision
from tests.integration.worker_support.helpers import JOBS_TABLE, QUEUES_TABLE, job_count
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_MODULE = "tests.integration.worker_support.cli_tasks"
# Generous: a subprocess pays for interpreter start-up and imports, slower on a loaded CI machine.
PROCESS_TIMEOUT = 30.0


def cli_environment(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url
    env.pop("GRAPHILE_WORKER_SCHEMA", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


async def start_cli(args: Sequence[str], database_url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "backfill",
        *args,
        env=cli_environment(database_url),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def run_cli(args: Sequence[str], database_url: str) -> tuple[int, str, str]:
    return await finish(await start_cli(args, database_url))


@pytest.fixture
async def ledger(conn: asyncpg.Connection[Any]) -> asyncpg.Connection[Any]:
    await conn.execute(
        "create table cli_ledger (job_id bigint not null, event text not null, pid int not null,"
        " at timestamptz not null default clock_timestamp())"
    )
    return conn


async def locked_rows(conn: asyncpg.Connection[Any]) -> int:
    return int(
        await conn.fetchval(
            f"select (select count(*) from {JOBS_TABLE} where locked_by is not null)"
            f" + (select count(*) from {QUEUES_TABLE} where locked_by is not null)"
        )
    )


async def test_worker_once_drains_the_queue_and_exits_0(
    database_url: str, pool: asyncpg.Pool[Any], ledger: asyncpg.Connection[Any]
) -> None:
    jobs = [await add_job(pool, "cli_record", {"n": n}, queue_name="q" if n % 2 else None) for n in range(5)]

    code, _, stderr = await run_cli(["worker", "--tasks", TASKS_MODULE, "--once"], database_url)

    assert code == 0, stderr
    ran = await ledger.fetch("select job_id, pid from cli_ledger where event = 'ran' order by job_id")
    assert [row["job_id"] for row in ran] == [job.id for job in jobs]
    assert {row["pid"] for row in ran} != {os.getpid()}  # really another process
    assert await job_count(ledger) == 0
    assert "succeeded=5" in stderr


async def test_worker_finishes_its_running_job_on_sigterm_and_exits_0(
    database_url: str, pool: asyncpg.Pool[Any], ledger: asyncpg.Connection[Any]
) -> None:
    process = await start_cli(["worker", "--tasks", TASKS_MODULE, "--poll-interval", "0.1"], database_url)
    try:
        job = await add_job(pool, "cli_slow", {"seconds": 1.0}, queue_name="slow")

        async def started() -> bool:
            return bool(await ledger.fetchval("select count(*) from cli_ledger where event = 'started'"))

        await wait_for(started, timeout=PROCESS_TIMEOUT, message="the slow job to start in the worker process")
        process.send_signal(signal.SIGTERM)
        code, _, stderr = await finish(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert code == 0, stderr
    events = await ledger.fetch("select event from cli_ledger where job_id = $1 order by at", job.id)
    assert [row["event"] for row in events] == ["started", "finished"]
    assert await job_count(ledger) == 0  # completed, not returned or failed
    assert await locked_rows(ledger) == 0
    assert "succeeded=1" in stderr


async def test_migrate_installs_the_schema_and_exits_0_printing_what_docs_cli_md_shows(
    empty_database_url: str,
) -> None:
    # The session that docs/cli.md shows under `migrate`: two runs on an empty database, output for output.
    documented = _documented_session("## `migrate`")
    assert [command for command, _ in documented] == ["backfill migrate", "backfill migrate"]
    for _, expected in documented:
        code, stdout, stderr = await run_cli(["migrate"], empty_database_url)
        assert code == 0, stderr
        assert stdout.splitlines() == expected
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await current_revision(connection) == 20
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("module", "complaint"),
    [("no_such_module_for_backfill", "cannot import"), ("json", "no tasks found")],
    ids=["missing-module", "module-without-tasks"],
)
async def test_bad_tasks_module_exits_2_naming_it(database_url: str, module: str, complaint: str) -> None:
    code, _, stderr = await run_cli(["worker", "--tasks", module, "--once"], database_url)
    assert code == 2, stderr
    assert module in stderr
    assert complaint in stderr


@pytest.mark.parametrize(
    "command",
    [["migrate"], ["worker", "--tasks", TASKS_MODULE, "--once"]],
    ids=["migrate", "worker"],
)
async def test_a_breaking_revision_newer_than_20_exits_57(
    database_url: str, conn: asyncpg.Connection[Any], command: list[str]
) -> None:
    await conn.execute("insert into graphile_worker.migrations (id, breaking) values (21, true)")
    code, _, stderr = await run_cli(command, database_url)
    assert code == 57, stderr
    assert "21" in stderr


async def test_sigterm_exits_promptly_even_if_a_sync_handler_outlives_the_grace_period(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    marker = tmp_path / "sync-started"
    job = await add_job(pool, "cli_sync_stuck", {"marker": str(marker), "seconds": 4})
    args = ["worker", "--tasks", TASKS_MODULE, "--poll-interval", "0.1", "--shutdown-grace", "0.2"]
    process = await start_cli(args, database_url)
    try:

        async def sync_started() -> bool:
            return marker.exists()

        await wait_for(sync_started, timeout=PROCESS_TIMEOUT, message="the sync handler to start")
        process.send_signal(signal.SIGTERM)

        # The job itself is released at once (interrupted); the process should follow within moments.
        async def released() -> bool:
            row = await conn.fetchrow(f"select locked_by, last_error from {JOBS_TABLE} where id = $1", job.id)
            return row is not None and row["locked_by"] is None and (row["last_error"] or "").startswith("Interrupted")

        await wait_for(released, timeout=5, message="the interrupted job to be released")
        code = await asyncio.wait_for(process.wait(), 2.0)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0


async def test_migrate_also_installs_backfills_own_tables(empty_database_url: str) -> None:
    code, stdout, stderr = await run_cli(["migrate"], empty_database_url)
    assert code == 0, stderr
    applied = "core/1, core/2, core/3, core/4, core/5, dlq/1, dlq/2, dlq/3, tasks/1, tasks/2, tasks/3"
    assert f"backfill's own migrations applied: {applied}" in stdout
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await connection.fetchval("select to_regclass('graphile_worker.backfill_workers') is not null")
        assert await connection.fetchval("select to_regclass('graphile_worker.backfill_dlq') is not null")
        assert await connection.fetchval("select to_regclass('graphile_worker.backfill_job_results') is not null")
    finally:
        await connection.close()


async def test_add_then_jobs_show_through_the_entry_point_with_json_on_stdout_only(database_url: str) -> None:
    code, stdout, stderr = await run_cli(["add", "cli_record", '{"n": 7}', "--queue", "q", "--json"], database_url)
    assert code == 0, stderr
    added = json.loads(stdout)
    assert (added["task_identifier"], added["payload"], added["queue_name"]) == ("cli_record", {"n": 7}, "q")

    code, stdout, stderr = await run_cli(["jobs", "show", str(added["id"]), "--json"], database_url)
    assert code == 0, stderr
    shown = json.loads(stdout)
    assert (shown["id"], shown["state"], shown["payload"]) == (added["id"], "waiting", {"n": 7})


@pytest.mark.parametrize(
    ("command", "code"),
    [(["jobs", "show", "999999"], 3), (["jobs", "remove", "no-such-key"], 3), (["jobs", "list", "--limit", "x"], 2)],
    ids=["unknown-id", "unknown-key", "bad-option"],
)
async def test_scripts_can_trust_the_exit_code(database_url: str, command: list[str], code: int) -> None:
    exit_code, stdout, stderr = await run_cli(command, database_url)
    assert exit_code == code, stderr
    assert stdout == ""
    assert stderr  # says what was wrong


async def test_a_malformed_crontab_stops_the_worker_at_start_with_exit_2_naming_file_and_line(
    database_url: str, tmp_path: Path
) -> None:
    crontab = tmp_path / "crontab"
    crontab.write_text("# nightly\n0 4 * * * cli_record ?fil=1d\n")
    code, _, stderr = await run_cli(["worker", "--tasks", TASKS_MODULE, "--crontab", str(crontab)], database_url)
    assert code == 2, stderr
    assert f"{crontab} line 2" in stderr
    assert "unknown option 'fil'" in stderr


def _documented_session(heading: str) -> list[tuple[str, list[str]]]:
    """The first shell session (a fenced block of ``$ command`` lines, each followed by its output) under
    ``heading`` in docs/cli.md: (command, output lines) pairs."""
    text = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    block = section[section.index("```\n$ ") + 4 : section.index("\n```", section.index("```\n$ ") + 4)]
    session: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            session.append((line[2:], []))
        else:
            session[-1][1].append(line)
    return session
