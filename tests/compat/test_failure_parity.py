"""Proof 5: a job failed by backfill looks exactly like one failed by Node.

Both runners get the same task (``fail``: throw an error whose message is "boom") on twin jobs. The
failing statement's ``now()`` cannot be read afterwards, so each runner is bracketed by two readings of
the database clock: ``run_at - exp(least(attempts, 10)) s`` must fall between them.

One deliberate difference: ``last_error``. Node writes the message alone ("boom"); backfill writes the
exception's type before it ("Exception: boom"), as Python prints it, because a bare message ("'email'") says
nothing in triage. The column is text to Graphile either way, so a Node worker reads and overwrites it
unaffected.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core import Worker, WorkerOptions, add_job
from tests.compat.ledger import backfill_tasks
from tests.compat.nodejs import NodeRunner

pytestmark = pytest.mark.compat

# timestamptz and interval keep microseconds; exp() adds float rounding below that.
_CLOCK_SLACK = timedelta(milliseconds=1)

# Columns that must match between the twins; id, payload and timestamps are compared separately.
_SAME = ("attempts", "max_attempts", "locked_at", "locked_by", "key", "priority", "revision", "flags")


async def _now(connection: asyncpg.Connection[Any]) -> datetime:
    value: datetime = await connection.fetchval("select clock_timestamp()")
    return value


async def _prepare(connection: asyncpg.Connection[Any], who: str, attempts_before: int, max_attempts: int) -> int:
    job = await add_job(connection, "fail", {"who": who}, max_attempts=max_attempts)
    if attempts_before:
        # As if earlier attempts had failed long ago and the retry is due now.
        await connection.execute(
            "update graphile_worker._private_jobs set attempts = $2::smallint where id = $1::bigint",
            job.id,
            attempts_before,
        )
    return job.id


async def _row(connection: asyncpg.Connection[Any], job_id: int) -> dict[str, Any]:
    row = await connection.fetchrow(
        "select *, payload::text as payload, flags::text as flags from graphile_worker._private_jobs"
        " where id = $1::bigint",
        job_id,
    )
    assert row is not None, f"job {job_id} disappeared: a failed job must stay"
    return dict(row)


@pytest.mark.parametrize(
    ("attempts_before", "max_attempts"),
    [(0, 25), (11, 25), (0, 1)],
    ids=["first-failure", "backoff-capped-at-exp-10", "permanent-failure"],
)
async def test_backfill_fails_a_job_as_node_does(
    database_url: str, node: NodeRunner, attempts_before: int, max_attempts: int
) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        node_job = await _prepare(connection, "node", attempts_before, max_attempts)
        before = await _now(connection)
        await node.run_once(database_url)
        node_window = (before, await _now(connection))
        # Node's job is now either waiting for its retry (seconds to hours ahead) or failed for good, so
        # the backfill worker below finds only its own twin.
        our_job = await _prepare(connection, "backfill", attempts_before, max_attempts)
        before = await _now(connection)
        summary = await Worker(database_url, tasks=backfill_tasks(), options=WorkerOptions(concurrency=1)).run_once()
        our_window = (before, await _now(connection))

        theirs, ours = await _row(connection, node_job), await _row(connection, our_job)
    finally:
        await connection.close()

    assert (summary.succeeded, summary.failed) == (0, 1)
    assert {column: ours[column] for column in _SAME} == {column: theirs[column] for column in _SAME}
    assert theirs["attempts"] == attempts_before + 1
    assert theirs["last_error"] == "boom"
    assert ours["last_error"] == "Exception: boom"
    assert (ours["payload"], theirs["payload"]) == ('{"who":"backfill"}', '{"who":"node"}')
    # updated_at is left alone by both (Node's worker never writes it) or, if ever, touched by both.
    assert (ours["updated_at"] == ours["created_at"]) == (theirs["updated_at"] == theirs["created_at"])

    backoff = timedelta(seconds=math.exp(min(attempts_before + 1, 10)))
    for who, row, (before, after) in (("node", theirs, node_window), ("backfill", ours, our_window)):
        failed_at = row["run_at"] - backoff
        assert before - _CLOCK_SLACK <= failed_at <= after + _CLOCK_SLACK, (who, before, failed_at, after)
