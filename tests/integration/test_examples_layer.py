"""The backfill-layer examples run as documented (``python -m examples.<name>`` with only DATABASE_URL) and
leave the database in the state they claim."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

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
    return done.stdout


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
    assert rows[0]["last_error"] == "550 mailbox unavailable"
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
