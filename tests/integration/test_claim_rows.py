"""The worker's claim builds each Job from its row by position (jobs.claimed_job); the rows must have the
columns that decoder expects, and the jobs must be what the row says, field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from backfill.core import SchemaName, add_jobs
from backfill.core.jobs import CLAIMED_JOB_COLUMNS, Job, JobSpec
from backfill.core.run.claims import Claims
from backfill.core.run.queries import WorkerQueries

SPECS = [
    JobSpec("claimed", {"n": 1, "s": "é"}),
    JobSpec("claimed", [1, 2], queue_name="serial-claim", max_attempts=3, priority=-4, flags=["a", "b"]),
    JobSpec("claimed", None, run_at=datetime(2001, 1, 1, tzinfo=UTC), timeout=2.5),
]


async def test_the_claim_returns_the_columns_its_decoder_reads_by_position(pool: asyncpg.Pool[Any]) -> None:
    queries = WorkerQueries.for_schema(SchemaName.coerce(None))
    await add_jobs(pool, SPECS)
    rows = await pool.fetch(queries.fetch_jobs, "test-claim-rows", ["claimed"], 10)
    assert len(rows) == len(SPECS)
    assert tuple(rows[0].keys()) == CLAIMED_JOB_COLUMNS


async def test_claimed_jobs_are_their_rows_field_by_field(pool: asyncpg.Pool[Any]) -> None:
    schema = SchemaName.coerce(None)
    await add_jobs(pool, SPECS)
    claims = Claims(pool, WorkerQueries.for_schema(schema), "test-claim-rows", ["claimed"])
    try:
        async with pool.acquire() as connection:
            await claims.load_task_names(connection)
        jobs = await claims.claim(10)
        async with pool.acquire() as connection:
            rows = await connection.fetch(
                f"""select j.id, j.job_queue_id, j.task_id, j.payload::text as payload, j.priority, j.run_at,
                           j.attempts, j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key,
                           j.locked_at, j.locked_by, j.revision, j.flags::text as flags, q.queue_name
                      from {schema}._private_jobs as j
                      left join {schema}._private_job_queues as q on q.id = j.job_queue_id
                     where j.id = any($1::bigint[])""",
                [job.id for job in jobs],
            )
    finally:
        await claims.close()
    by_id = {row["id"]: Job.from_record(row, task_identifier="claimed") for row in rows}
    assert len(jobs) == len(SPECS)
    for job in jobs:
        assert job == by_id[job.id]  # every field, by name from the table, equals the claim's decode
        assert job.locked_by == "test-claim-rows"
    assert {job.queue_name for job in jobs} == {None, "serial-claim"}
    assert {job.timeout for job in jobs} == {None, 2.5}
