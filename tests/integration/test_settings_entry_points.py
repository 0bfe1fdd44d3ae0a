"""Each entry point reads the settings it uses: a client validates only its own (a bad worker variable in a
shared environment must not stop a web process from enqueueing), and every CLI command reads ``.env`` as
``backfill run`` does, refusing an ``--env-file`` that does not exist."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.errors import ConfigurationError
from backfill.settings import BackfillSettings
from tests.integration.worker_support.helpers import JOBS_TABLE
from tests.support.processes import REPO_ROOT, run_python


async def test_a_bad_worker_variable_does_not_stop_a_client_from_enqueueing(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("FAST_QUEUE_CONCURRENCY", "ten")
    monkeypatch.setenv("BACKFILL_METRICS_PORT", "99999")
    with pytest.raises(ConfigurationError, match="FAST_QUEUE_CONCURRENCY"):
        BackfillSettings.load()  # a runner with this environment refuses to start, naming the variable
    async with BackfillClient.from_env() as client:
        job = await client.enqueue("mail", {"to": "a@example.com"})
    assert await conn.fetchval(f"select count(*) from {JOBS_TABLE} where id = $1", job.id) == 1


async def test_a_client_still_refuses_a_bad_variable_it_reads(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BACKFILL_DEFAULT_RETRY_POLICY", "sometimes")
    with pytest.raises(ConfigurationError, match="BACKFILL_DEFAULT_RETRY_POLICY"):
        BackfillClient.from_env()


async def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    finished = await run_python("-m", "backfill", *args, env=env, cwd=cwd, merge_stderr=True)
    return finished.code, finished.stdout


def _environment_without_database() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "GRAPHILE_WORKER_SCHEMA"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


async def test_every_command_reads_the_env_file(
    database_url: str, conn: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f"DATABASE_URL={database_url}\n")
    code, output = await _cli(["add", "mail", '{"n": 1}'], tmp_path, _environment_without_database())
    assert code == 0, output
    code, output = await _cli(["jobs", "list"], tmp_path, _environment_without_database())
    assert code == 0, output
    assert "mail" in output
    elsewhere = tmp_path / "config" / "backfill.env"
    elsewhere.parent.mkdir()
    (tmp_path / ".env").unlink()
    elsewhere.write_text(f"DATABASE_URL={database_url}\n")
    code, output = await _cli(["--env-file", str(elsewhere), "stats"], tmp_path, _environment_without_database())
    assert code == 0, output
    assert await conn.fetchval(f"select count(*) from {JOBS_TABLE}") == 1


@pytest.mark.parametrize(
    "args",
    [["--env-file", "missing.env", "jobs", "list"], ["run", "--env-file", "missing.env"]],
    ids=["global option", "run option"],
)
async def test_a_missing_env_file_is_an_error_naming_it(args: list[str], tmp_path: Path) -> None:
    code, output = await _cli(args, tmp_path, _environment_without_database())
    assert code == 2, output
    assert "--env-file" in output and "missing.env" in output
    assert "Traceback" not in output
