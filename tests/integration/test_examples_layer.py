"""The backfill-layer examples run as documented (``python -m examples.<name>`` with only DATABASE_URL) and
leave the database in the state they claim."""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import asyncpg

from backfill.settings import TEST_ONLY_VARIABLES, BackfillSettings
from tests.support.markdown import markdown_anchors

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS = "graphile_worker._private_jobs"
DLQ = "graphile_worker.backfill_dlq"


def _example(name: str, database_url: str) -> str:
    """Run ``examples.<name>``; its stdout, once it exited 0."""
    env = {**os.environ, "DATABASE_URL": database_url}
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    # On a fresh database, nothing but the example's own story: no warning it did not stage.
    assert _stray_warnings(done.stderr) == [], done.stderr
    return done.stdout


def _stray_warnings(stderr: str) -> list[str]:
    """Lines of ``stderr`` that are neither a job failure the example stages on purpose (with its traceback)
    nor an INFO/DEBUG log line: Python warnings, a missing catalog, and any other WARNING or ERROR record.
    Examples that configure no logging print such records as the bare message, so lines are judged by shape."""
    stray: list[str] = []
    in_traceback = False
    for line in stderr.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback:
            in_traceback = line.startswith((" ", "\t"))  # the exception's own line closes the traceback
        elif " failed on attempt " in line:
            continue
        elif line.startswith("{"):
            level = json.loads(line).get("level")
            if level not in {"debug", "info"}:
                stray.append(line)
        elif line.strip():
            stray.append(line)
    return stray


async def test_quickstart_runs_both_lanes(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    out = _example("quickstart", database_url)
    assert "welcome email to Ada <ada@example.com>" in out
    assert "rebuilt the report for 2025" in out
    assert "worker pass: succeeded=3 failed=0" in out
    assert "quickstart.send_welcome at priority -5" in out  # the task's default priority, applied by the client
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0


async def test_priorities_and_lanes_holds_its_three_claims(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    out = _example("priorities_and_lanes", database_url)
    assert out.count("\nok: ") == 3, out
    assert "NOT TRUE" not in out
    assert "reports monthly_report" in out  # the reports jobs ran in the custom lane
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0


async def test_retries_and_dlq_leaves_exactly_the_two_hopeless_jobs_in_the_dlq(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    out = _example("retries_and_dlq", database_url)
    assert "fetch_rates attempt 3 of 3" in out
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0
    rows = await pool.fetch(f"select task_identifier, payload::text, reason, last_error from {DLQ} order by id")
    assert [(r["task_identifier"], r["reason"]) for r in rows] == [
        ("retries.charge_card", "permanent_failure"),
        ("retries.send_sms", "permanent_failure"),
    ]
    assert "declined" in rows[0]["last_error"]
    assert "01632 960961" in rows[1]["payload"] and "international" in rows[1]["last_error"]


async def test_dlq_triage_requeues_the_fixed_deletes_the_stale_and_annotates_the_rest(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    out = _example("dlq_triage", database_url)
    assert "dry run: would requeue entries" in out
    assert "delivered after the fix: user0@example.com, user1@example.com, user2@example.com" in out
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0
    rows = await pool.fetch(f"select task_identifier, state, last_error, notes from {DLQ}")
    # The requeued entries were deleted when their jobs succeeded; the 60-day-old one was deleted.
    assert len(rows) == 1
    assert (rows[0]["task_identifier"], rows[0]["state"]) == ("triage.send_email", "dead")
    assert rows[0]["last_error"] == "RuntimeError: 550 mailbox unavailable"
    assert "support told the customer" in rows[0]["notes"]


async def test_cron_catches_up_missed_minutes_with_fill(database_url: str, pool: asyncpg.Pool[Any]) -> None:
    # As if a worker had run this crontab until three minutes ago: fill=5m schedules the missed minutes at
    # start-up, so the example need not wait for the next minute.
    await pool.execute(
        "insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution)"
        " values ('cron.heartbeat', now() - interval '1 hour', date_trunc('minute', now()) - interval '3 minutes')"
    )
    out = _example("cron", database_url)
    assert "heartbeat of billing for " in out and "(backfilled: True)" in out
    caught_up = await pool.fetchval(
        "select last_execution >= date_trunc('minute', now()) - interval '1 minute'"
        " from graphile_worker._private_known_crontabs where identifier = 'cron.heartbeat'"
    )
    assert caught_up is True
    known = await pool.fetch("select identifier from graphile_worker._private_known_crontabs order by identifier")
    assert [row["identifier"] for row in known] == ["cron.heartbeat", "cron.nightly_cleanup"]


async def test_fastapi_app_lifespan_runs_the_worker_beside_the_endpoint(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    out = _example("fastapi_app", database_url)
    assert "POST /signups (called directly) -> {'job_id': " in out
    assert "welcome emails sent by the worker: ada@example.com" in out
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0
    # The lifespan stopped the runner: no worker is left registered.
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


async def test_sync_enqueue_commits_with_the_transaction_and_not_without(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    out = _example("sync_enqueue", database_url)
    assert "receipts sent for orders [1, 2, 4]" in out  # order 3's transaction rolled back, and its job with it
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0


# -- the documentation around the examples: snippets, links, the environment reference ------------------------

USER_DOCS = [
    REPO_ROOT / "README.md",
    REPO_ROOT / "docs" / "quickstart.md",
    REPO_ROOT / "docs" / "architecture.md",
    *sorted((REPO_ROOT / "docs" / "how-to").glob("*.md")),
    *sorted((REPO_ROOT / "docs" / "reference").glob("*.md")),
]
# api.md shows signatures, not runnable code; every other Python block must parse.
SNIPPET_DOCS = [path for path in USER_DOCS if path.name != "api.md"]
_PYTHON_BLOCK = re.compile(r"^( *)```python\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _python_blocks(path: Path) -> list[str]:
    return [textwrap.dedent(block) for _, block in _PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))]


def _backfill_names(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) for every `backfill.X` attribute and every `from backfill... import X` in ``tree``."""
    names: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "backfill":
            names.append(("backfill", node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.module.split(".")[0] == "backfill":
            names.extend((node.module, alias.name) for alias in node.names)
    return names


def test_doc_snippets_parse_and_use_names_that_exist() -> None:
    checked = 0
    for path in SNIPPET_DOCS:
        for block in _python_blocks(path):
            flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # README snippets await at top level
            tree = compile(block, str(path), "exec", flags=flags)
            for module, name in _backfill_names(tree):
                assert hasattr(importlib.import_module(module), name), f"{path.name}: {module}.{name} does not exist"
                checked += 1
    assert checked > 20


def test_relative_links_in_the_docs_lead_somewhere() -> None:
    for path in USER_DOCS:
        for target in _LINK.findall(path.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            assert resolved.exists(), f"{path.relative_to(REPO_ROOT)}: broken link {target}"
            if anchor and resolved.suffix == ".md":
                assert anchor in markdown_anchors(resolved), f"{path.relative_to(REPO_ROOT)}: no heading for {target}"


def test_the_environment_reference_matches_env_example() -> None:
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    defaults = dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$", example, re.MULTILINE))
    reference = (REPO_ROOT / "docs" / "reference" / "environment.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]+) \|", reference, re.MULTILINE))
    for name in BackfillSettings.env_names().values():
        assert name in defaults, f"{name} is read by BackfillSettings but missing from .env.example"
        assert name in rows, f"{name} is missing from docs/reference/environment.md"
        documented = rows[name].strip()
        if name == "DATABASE_URL":
            assert documented == "none (required)"
        elif defaults[name] == "":
            assert documented in {"none", "computed"}, f"{name}: .env.example has no default, the docs say {documented}"
        else:
            assert documented == f"`{defaults[name]}`", f"{name}: .env.example says {defaults[name]!r}"
    for name in TEST_ONLY_VARIABLES | {"CI"}:
        assert f"`{name}`" in reference, f"{name} (tests only) is not mentioned"
