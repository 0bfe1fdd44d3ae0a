"""The Django backend in a real Django project (tests/django_project) against PostgreSQL: enqueue in the
project's transactions, jobs run by ``manage.py backfill_worker``, results read back through ``get_result``.

Every Django step runs as the project's own process (``manage.py ...``), so nothing of Django is configured in
the test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core import SchemaName
from backfill.migrations import migrate_all
from tests.support.processes import Finished, run_python
from tests.support.waiting import wait_for

pytest.importorskip("django")

PROJECT = Path(__file__).resolve().parents[1] / "django_project"
JOBS = "graphile_worker.jobs"
RESULTS = "graphile_worker.backfill_job_results"


@pytest.fixture(autouse=True)
async def _backfill_tables(pool: asyncpg.Pool[Any]) -> None:
    """backfill's own tables (results, catalog) beside Graphile's, as a deployment's first runner installs them."""
    await migrate_all(pool, SchemaName.coerce(None))


def _environment(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DATABASE_URL=database_url,
        BACKFILL_LANES="emails=1",
        BACKFILL_LOG_FORMAT="json",
        POLL_INTERVAL_MS="100",
        PYTHONPATH=str(PROJECT.parents[1]),
        **extra,
    )
    return env


async def _manage(database_url: str, *argv: str) -> Finished:
    finished = await run_python("manage.py", *argv, env=_environment(database_url), cwd=PROJECT)
    assert finished.code == 0, finished.output
    return finished


async def _shop(database_url: str, *argv: str) -> list[dict[str, Any]]:
    finished = await _manage(database_url, "shop_demo", *argv)
    return [json.loads(line) for line in finished.stdout.splitlines() if line.startswith("{")]


async def _enqueue(database_url: str, task: str, *arguments: Any, options: tuple[str, ...] = ()) -> dict[str, Any]:
    lines = await _shop(database_url, "enqueue", task, *(json.dumps(a) for a in arguments), *options)
    return lines[-1]


async def _outcome_count(pool: asyncpg.Pool[Any], *job_ids: int) -> bool:
    count = await pool.fetchval(f"select count(*) from {RESULTS} where job_id = any($1::bigint[])", list(job_ids))
    return bool(count == len(job_ids))


async def test_committed_jobs_run_on_the_worker_and_their_results_come_back(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute("create table shop_marks (id serial primary key, name text)")
    calls = [["add", 2, 3], ["send_receipt", 7], ["attempt_number", "x"], ["echo_later", {"a": [1, 2]}], ["mark", "a"]]
    added, receipt, context, echoed, marked = await _shop(database_url, "batch", json.dumps(calls))
    assert added["status"] == "READY" and added["args"] == [2, 3] and added["task"] == "shop.tasks.add"
    row = await pool.fetchrow(f"select task_identifier, priority, flags from {JOBS} where id = $1", int(added["id"]))
    assert row is not None and row["task_identifier"] == "shop.tasks.add" and row["priority"] == 0
    assert "backfill:result=600" in row["flags"]  # KEEP_RESULT from the backend's OPTIONS
    # Django's priority 10 (higher first) is backfill's -10 (lower first); the "emails" queue is its lane.
    row = await pool.fetchrow(f"select priority, flags from {JOBS} where id = $1", int(receipt["id"]))
    assert row is not None and row["priority"] == -10 and "backfill:lane=emails" in row["flags"]
    ids = [int(job["id"]) for job in (added, receipt, context, echoed, marked)]

    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "manage.py",
        "backfill_worker",
        "--env-file",
        os.devnull,
        cwd=PROJECT,
        env=_environment(database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: _outcome_count(pool, *ids), timeout=30, message="the jobs' outcomes")
        worker.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(worker.wait(), 30)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.stderr is not None
    stderr = (await worker.stderr.read()).decode()
    assert code == 0, stderr[-3000:]
    assert "received SIGTERM" in stderr

    results = {line["id"]: line for line in await _shop(database_url, "result", *map(str, ids))}
    assert results[added["id"]]["status"] == "SUCCESSFUL" and results[added["id"]]["return_value"] == 5
    assert results[added["id"]]["attempts"] == 1 and results[added["id"]]["finished_at"] is not None
    assert results[added["id"]]["args"] == []  # gone with the job's row: backfill keeps the outcome only
    assert results[receipt["id"]]["return_value"] == "receipt 7"
    assert results[context["id"]]["return_value"] == {"label": "x", "attempt": 1, "id": context["id"]}
    assert results[echoed["id"]]["return_value"] == {"a": [1, 2]}  # an async def, run on the worker's loop
    mark_id = await pool.fetchval("select id from shop_marks where name = 'a'")
    assert results[marked["id"]]["return_value"] == mark_id  # the task wrote with Django's connection


async def test_a_rolled_back_transaction_leaves_no_job(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    rolled_back = await _enqueue(database_url, "add", 1, 1, options=("--rollback",))
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0
    (missing,) = await _shop(database_url, "result", rolled_back["id"])
    assert "missing" in missing
    # Read back inside its own transaction, before the commit, the job is there and READY.
    lines = await _shop(database_url, "enqueue", "add", "1", "2", "--read-back")
    assert lines[0]["read_back"] is True and lines[0]["status"] == "READY" and lines[0]["args"] == [1, 2]
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 1
    # Outside any atomic block (autocommit), the job is committed at once.
    await _enqueue(database_url, "add", 5, 5, options=("--autocommit",))
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 2


async def test_once_runs_what_is_due_and_a_failure_is_failed_with_its_error(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    added, exploded = await _shop(database_url, "batch", json.dumps([["add", 20, 22], ["explode", "out of stock"]]))
    later = await _enqueue(database_url, "add", 1, 1, options=("--delay", "3600"))
    # No attempt left after this one: the failure is final at once (the project's policy would retry it).
    await pool.execute(f"update graphile_worker._private_jobs set max_attempts = 1 where id = {int(exploded['id'])}")

    finished = await _manage(database_url, "backfill_worker", "--once", "--env-file", os.devnull)
    assert "backfill_worker: succeeded=1 failed=1" in finished.stdout

    added_result, failed, waiting = await _shop(database_url, "result", added["id"], exploded["id"], later["id"])
    assert added_result["status"] == "SUCCESSFUL" and added_result["return_value"] == 42
    assert failed["status"] == "FAILED"
    assert failed["errors"] == [{"path": "builtins.ValueError", "traceback": "ValueError: out of stock"}]
    assert waiting["status"] == "READY"  # run_after an hour from now: not due, left queued


async def test_wait_returns_once_the_worker_has_run_the_task(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    added = await _enqueue(database_url, "add", 3, 4)
    waiter = asyncio.create_task(_shop(database_url, "result", added["id"], "--wait", "30"))
    await _manage(database_url, "backfill_worker", "--once", "--env-file", os.devnull)
    (result,) = await asyncio.wait_for(waiter, 40)
    assert result["status"] == "SUCCESSFUL" and result["return_value"] == 7
