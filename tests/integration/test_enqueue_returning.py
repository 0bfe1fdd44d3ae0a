"""add_jobs without rows back (returning=False), and the batch decoding of the rows it returns otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg

from backfill.core.enqueue import add_jobs
from backfill.core.jobs import Job, JobSpec

JOBS = "graphile_worker._private_jobs"
_NAMED_ROWS = """
    select j.id, j.job_queue_id, j.task_id, j.payload::text as payload, j.priority, j.run_at, j.attempts,
           j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by, j.revision,
           j.flags::text as flags, t.identifier as task_identifier, q.queue_name
      from graphile_worker._private_jobs as j
      join graphile_worker._private_tasks as t on t.id = j.task_id
      left join graphile_worker._private_job_queues as q on q.id = j.job_queue_id
     order by j.id
"""


def _mixed_specs() -> list[JobSpec]:
    """Several tasks and queues, flags shared by some specs and absent from others, keys and times."""
    run_at = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    return [
        JobSpec("returning.a", {"n": 0}, flags=["shared", "x"]),
        JobSpec("returning.b", [1, 2], queue_name="q1", flags=["shared", "x"], priority=-3),
        JobSpec("returning.a", {"n": 2}, queue_name="q2", job_key="k2", run_at=run_at, max_attempts=4),
        JobSpec("returning.c", {"é": "ü"}, flags=["other"], timeout=1.5),
        JobSpec("returning.b", None),
    ]


async def test_returning_false_writes_every_job_and_says_how_many(conn: asyncpg.Connection[Any]) -> None:
    specs = _mixed_specs()
    written = await add_jobs(conn, specs, returning=False)
    assert written == len(specs)
    # The rows come in no promised order (Graphile's insert joins the specs to their tasks): compare as sets.
    written_rows = {
        (
            row["task_identifier"],
            row["queue_name"],
            row["payload"],
            frozenset(json.loads(row["flags"]) if row["flags"] else ()),
            row["key"],
            row["max_attempts"],
            row["priority"],
        )
        for row in await conn.fetch(_NAMED_ROWS)
    }
    assert written_rows == {
        (
            spec.identifier,
            spec.queue_name,
            spec.payload_json,
            frozenset(spec.flags or ()),
            spec.job_key,
            spec.max_attempts or 25,
            spec.priority or 0,
        )
        for spec in specs
    }


async def test_returning_false_with_nothing_to_add(conn: asyncpg.Connection[Any]) -> None:
    assert await add_jobs(conn, [], returning=False) == 0


async def test_returned_jobs_are_the_rows_as_from_record_reads_them(conn: asyncpg.Connection[Any]) -> None:
    jobs = await add_jobs(conn, _mixed_specs())
    expected = [Job.from_record(row) for row in await conn.fetch(_NAMED_ROWS)]
    assert sorted(jobs) == sorted(expected)
    assert {job.flags for job in jobs} == {
        frozenset({"shared", "x"}),
        frozenset(),
        frozenset({"other", "backfill:timeout=1.5"}),
    }
