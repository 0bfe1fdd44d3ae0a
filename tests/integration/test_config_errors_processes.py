"""Bad configuration is reported when it is used, as exit 2 naming the variable, never as a traceback at
import; in JSON mode every line ``backfill run`` writes on stderr is JSON (warnings, the fatal error, the
summary). Each case runs as a real process."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from tests.integration.worker_support.payload_tasks import SECRET_VALUE
from tests.support.processes import run_python

TASKS = "tests.integration.worker_support.runner_tasks"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "GRAPHILE_WORKER_", "DATABASE_URL"))}
    env.update(extra)
    return env


async def _run(*argv: str, env: dict[str, str]) -> tuple[int, str, str]:
    finished = await run_python(*argv, env=env)
    return finished.code, finished.stdout, finished.stderr


async def test_a_bad_schema_variable_does_not_break_help_or_imports() -> None:
    env = _env(GRAPHILE_WORKER_SCHEMA="pg_x")
    rc, out, err = await _run("-m", "backfill", "--help", env=env)
    assert (rc, err) == (0, ""), err
    assert "usage: backfill" in out
    rc, _, err = await _run("-c", "import backfill.runner, backfill.cli", env=env)
    assert (rc, err) == (0, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["migrate"],
        ["jobs", "list"],
        ["worker", "--once", "--tasks", TASKS],
        ["run", "--once", "--env-file", os.devnull],
    ],
    ids=lambda argv: argv[0] if argv[0] != "jobs" else "jobs_list",
)
async def test_a_bad_schema_variable_is_exit_2_naming_it(argv: list[str], database_url: str) -> None:
    env = _env(GRAPHILE_WORKER_SCHEMA="pg_x", DATABASE_URL=database_url, BACKFILL_TASK_MODULES=TASKS)
    rc, _, err = await _run("-m", "backfill", *argv, env=env)
    assert rc == 2, err
    assert "GRAPHILE_WORKER_SCHEMA" in err and "pg_x" in err
    assert "Traceback" not in err


async def test_the_schema_option_overrides_a_bad_variable(empty_database_url: str) -> None:
    env = _env(GRAPHILE_WORKER_SCHEMA="pg_x")
    rc, out, err = await _run("-m", "backfill", "migrate", "-c", empty_database_url, "--schema", "bf_chosen", env=env)
    assert rc == 0, err
    assert "schema bf_chosen" in out
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await connection.fetchval("select count(*) from pg_namespace where nspname = 'bf_chosen'") == 1
    finally:
        await connection.close()


@pytest.mark.parametrize("argv", [["migrate"], ["run", "--once", "--env-file", os.devnull]], ids=["migrate", "run"])
async def test_a_bad_log_level_is_exit_2_naming_the_variable(argv: list[str], database_url: str) -> None:
    env = _env(BACKFILL_LOG_LEVEL="loud", DATABASE_URL=database_url, BACKFILL_TASK_MODULES=TASKS)
    rc, _, err = await _run("-m", "backfill", *argv, env=env)
    assert rc == 2, err
    assert "BACKFILL_LOG_LEVEL" in err and "loud" in err
    assert "Traceback" not in err


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}\nstderr:\n{stderr}") from None
    return parsed


async def test_json_mode_writes_only_json_on_stderr(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    await add_job(pool, "runner.echo", {"n": 1})
    await add_job(pool, "payload.charge", {"card_token": "t", "amount_cents": SECRET_VALUE}, max_attempts=1)
    env = _env(
        DATABASE_URL=database_url,
        BACKFILL_TASK_MODULES=f"{TASKS},tests.integration.worker_support.payload_tasks",
        BACKFILL_LOG_FORMAT="json",
        BACKFILL_METRIC_PORT="9999",  # a typo: warned about, as JSON
    )
    rc, _, err = await _run("-m", "backfill", "run", "--once", "--env-file", os.devnull, env=env)
    assert rc == 0, err
    lines = _json_lines(err)
    assert any("BACKFILL_METRIC_PORT" in line["event"] for line in lines), err
    summary = [line for line in lines if line.get("event") == "backfill run finished"]
    assert len(summary) == 1, err
    assert (summary[0]["succeeded"], summary[0]["permanently_failed"]) == (1, 1)


async def test_json_mode_reports_a_fatal_error_as_json() -> None:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        env = _env(
            DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/db",
            BACKFILL_TASK_MODULES=TASKS,
            BACKFILL_LOG_FORMAT="json",
            BACKFILL_CONNECT_TIMEOUT_SECONDS="0",
        )
        rc, _, err = await _run("-m", "backfill", "run", "--env-file", os.devnull, env=env)
    assert rc == 1, err
    lines = _json_lines(err)
    assert any(line["level"] == "error" and "connect" in line["event"] for line in lines), err


async def test_json_mode_reports_a_bad_variable_as_json(database_url: str) -> None:
    env = _env(
        DATABASE_URL=database_url, BACKFILL_TASK_MODULES=TASKS, BACKFILL_LOG_FORMAT="json", FAST_QUEUE_CONCURRENCY="ten"
    )
    rc, _, err = await _run("-m", "backfill", "run", "--env-file", os.devnull, env=env)
    assert rc == 2, err
    lines = _json_lines(err)
    assert any(line["level"] == "error" and "FAST_QUEUE_CONCURRENCY" in line["event"] for line in lines), err
