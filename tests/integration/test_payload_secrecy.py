"""A payload that fails its task's model is reported by field and error type, never with its values: not in
the job's last_error, a log line, or a chained exception's traceback (core worker, runner in both formats)."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.tasks.modules import load_tasks
from tests.integration.worker_support.helpers import fast_options, job_row
from tests.integration.worker_support.payload_tasks import SECRET_VALUE
from tests.support.processes import run_python

TASKS = "tests.integration.worker_support.payload_tasks"
# amount_cents is the invalid field, and its value is the secret: pydantic quotes it as input_value=...
BAD_PAYLOAD = {"card_token": "tok_1", "amount_cents": SECRET_VALUE}


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every record of the process at DEBUG, formatted with its traceback, as an operator's handler would."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_core_worker_reports_field_and_type_without_the_value(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], captured_logs: io.StringIO
) -> None:
    job = await add_job(pool, "payload.charge", BAD_PAYLOAD)

    summary = await Worker(database_url, tasks=load_tasks([TASKS], source="test"), options=fast_options()).run_once()

    assert summary.failed == 1
    row = await job_row(conn, job.id)
    assert row is not None
    assert "amount_cents" in row["last_error"] and "int_parsing" in row["last_error"]
    assert SECRET_VALUE not in row["last_error"]
    logs = captured_logs.getvalue()
    assert "amount_cents" in logs  # the failure was logged, with its traceback
    assert SECRET_VALUE not in logs


@pytest.mark.parametrize("log_format", ["json", "console"])
async def test_runner_logs_hold_no_payload_value(database_url: str, pool: asyncpg.Pool[Any], log_format: str) -> None:
    job = await add_job(pool, "payload.charge", BAD_PAYLOAD, max_attempts=1)
    env = {key: value for key, value in os.environ.items() if not key.startswith("BACKFILL_")}
    env.update(DATABASE_URL=database_url, BACKFILL_TASK_MODULES=TASKS, BACKFILL_LOG_FORMAT=log_format)
    finished = await run_python("-m", "backfill", "run", "--once", "--env-file", os.devnull, env=env, merge_stderr=True)
    text = finished.stdout

    assert finished.code == 0, text
    assert "amount_cents" in text  # the failure is reported...
    assert SECRET_VALUE not in text  # ...without the value
    dead = await pool.fetchrow("select last_error from graphile_worker.backfill_dlq where job_id = $1", job.id)
    assert dead is not None and "amount_cents" in dead["last_error"]
    assert SECRET_VALUE not in dead["last_error"]
