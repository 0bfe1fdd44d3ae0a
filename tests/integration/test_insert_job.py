"""Jobs without a job key are written by enqueue.sql's insert_job and insert_jobs, not by Graphile's add_job and
add_jobs: the rows must be the ones those functions write, and a task or queue name that a concurrent
transaction registers while the statement runs must still give the job its task and its queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job, add_job_spec, add_jobs, enqueue_statement, insert_job_sql
from backfill.core.jobs import Job, JobSpec
from backfill.core.schema import SchemaName
from tests.support.waiting import wait_for

SCHEMA = "graphile_worker"
# Every column add_job decides; id, timestamps and run_at (now() of each call) differ between two calls.
COLUMNS = "job_queue_id, task_id, payload::text, priority, max_attempts, attempts, key, revision, flags::text"

SPECS = [
    JobSpec("plain"),
    JobSpec("full", {"n": 1, "s": "é"}, queue_name="serial", max_attempts=3, priority=-7, flags=["a", "b"]),
    JobSpec("later", [1, 2], run_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC), flags=[]),
    JobSpec("nulls", None, max_attempts=32767, priority=-32768),
    JobSpec("repeated-flags", {"a": [1, {"b": None}]}, queue_name="serial", flags=["x", "x", "y"]),
]


def _spec_fields(spec: JobSpec) -> tuple[Any, ...]:
    """``spec``'s fields in the order of Graphile's functions' arguments (job key and mode left out), written out
    here rather than taken from the code under test."""
    return (
        spec.identifier,
        spec.payload_json,
        spec.queue_name,
        spec.run_at,
        spec.max_attempts,
        spec.priority,
        None if spec.flags is None else list(spec.flags),
    )


def _json_or_none(flags: Any) -> str | None:
    return None if flags is None else json.dumps(list(flags))


def test_only_a_spec_without_a_job_key_takes_the_direct_insert() -> None:
    schema = SchemaName(SCHEMA)
    assert enqueue_statement(JobSpec("t"), None, schema)[0] == insert_job_sql(schema)
    assert "add_job(" in enqueue_statement(JobSpec("t", job_key="k"), None, schema)[0]


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.identifier)
async def test_the_direct_insert_writes_the_row_graphiles_add_job_writes(
    conn: asyncpg.Connection[Any], spec: JobSpec
) -> None:
    graphile = await conn.fetchval(
        f"select id from {SCHEMA}.add_job(identifier => $1, payload => $2::json, queue_name => $3, run_at => $4,"
        " max_attempts => $5, priority => $6, flags => $7)",
        *_spec_fields(spec),
    )
    ours = await add_job_spec(conn, spec)
    rows = await conn.fetch(
        f"select id, {COLUMNS}, run_at from {SCHEMA}._private_jobs where id = any($1::bigint[]) order by id",
        [graphile, ours.id],
    )
    assert [row["id"] for row in rows] == [graphile, ours.id]
    graphiles_row, our_row = (tuple(row)[1:-1] for row in rows)
    assert our_row == graphiles_row
    if spec.run_at is not None:
        assert rows[0]["run_at"] == rows[1]["run_at"] == spec.run_at
    assert (ours.task_identifier, ours.queue_name) == (spec.identifier, spec.queue_name)


async def test_a_batch_without_keys_writes_the_rows_graphiles_add_jobs_writes_in_its_order(
    conn: asyncpg.Connection[Any],
) -> None:
    specs = [*SPECS, JobSpec("brand-new", {"n": 2}, queue_name="brand-new-queue"), *SPECS]
    graphile_ids = await conn.fetchval(
        f"select array_agg(j.id) from {SCHEMA}.add_jobs(array("
        f"  select row(s.identifier, s.payload::json, s.queue_name, s.run_at, s.max_attempts::smallint, null,"
        f"             s.priority::smallint,"
        f"             case when s.flags is not null then array(select jsonb_array_elements_text(s.flags)) end"
        f"         )::{SCHEMA}.job_spec"
        f"    from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::int[], $7::jsonb[])"
        f"         with ordinality as s(identifier, payload, queue_name, run_at, max_attempts, priority, flags, n)"
        f"   order by s.n)) as j",
        # The flags as JSON arrays: text[] rows cannot nest in one unnest column.
        *zip(*[(*_spec_fields(spec)[:6], _json_or_none(spec.flags)) for spec in specs], strict=True),
    )
    ours = await add_jobs(conn, specs)

    assert [job.payload for job in ours] == [spec.payload if spec.payload is not None else {} for spec in specs]
    assert [job.id for job in ours] == sorted(job.id for job in ours)  # the batch's order, ids rising
    assert [(job.task_identifier, job.queue_name) for job in ours] == [(s.identifier, s.queue_name) for s in specs]
    rows = await conn.fetch(
        f"select id, {COLUMNS} from {SCHEMA}._private_jobs where id = any($1::bigint[]) order by id",
        [*graphile_ids, *(job.id for job in ours)],
    )
    # Graphile's add_jobs joins the specs with their tasks before inserting, so its ids need not follow the
    # batch's order: compare the rows as a whole.
    graphiles_rows = sorted((tuple(row)[1:] for row in rows[: len(specs)]), key=repr)
    our_rows = sorted((tuple(row)[1:] for row in rows[len(specs) :]), key=repr)
    assert our_rows == graphiles_rows


async def _first(jobs: Awaitable[list[Job]]) -> Job:
    return (await jobs)[0]


@pytest.mark.parametrize("batch", [False, True], ids=["insert_job", "insert_jobs"])
@pytest.mark.parametrize("name", ["task", "queue"])
async def test_a_name_registered_by_a_concurrent_transaction_still_reaches_the_job(
    conn: asyncpg.Connection[Any], database_url: str, name: str, batch: bool
) -> None:
    # The other transaction registers the name first and holds it uncommitted; the enqueue's snapshot cannot
    # see it, its insert waits on the unique key, and once the other commits it must take that row's id
    # (without the conflict arm that returns it, the job would fail without a task or land outside its queue).
    registrar = await asyncpg.connect(database_url)
    enqueuer = await asyncpg.connect(database_url)
    try:
        registration = registrar.transaction()
        await registration.start()
        if name == "task":
            registered = await registrar.fetchval(
                f"insert into {SCHEMA}._private_tasks (identifier) values ('racy') returning id"
            )
        else:
            registered = await registrar.fetchval(
                f"insert into {SCHEMA}._private_job_queues (queue_name) values ('racy-queue') returning id"
            )
        if batch:
            enqueue = asyncio.create_task(_first(add_jobs(enqueuer, [JobSpec("racy", queue_name="racy-queue")] * 2)))
        else:
            enqueue = asyncio.create_task(add_job(enqueuer, "racy", queue_name="racy-queue"))
        pid = enqueuer.get_server_pid()
        await wait_for(
            lambda: conn.fetchval("select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid),
            message="the enqueue waits on the uncommitted registration",
        )
        await registration.commit()
        job = await asyncio.wait_for(enqueue, 10)
    finally:
        await registrar.close()
        await enqueuer.close()

    row = await conn.fetchrow(f"select task_id, job_queue_id from {SCHEMA}._private_jobs where id = $1", job.id)
    assert row is not None
    column = "task_id" if name == "task" else "job_queue_id"
    assert row[column] == registered
    assert (job.task_identifier, job.queue_name) == ("racy", "racy-queue")


async def test_the_jobs_a_batch_returns_are_the_rows_it_wrote(conn: asyncpg.Connection[Any]) -> None:
    # The batch returns what only the database knows (ids, task and queue ids, run_at, now()) and builds the
    # rest from the specs: every field must still be what a read of the rows gives.
    specs = [
        *SPECS,
        JobSpec("timed", (1, "two"), timeout=2.5, flags=["a"]),
        JobSpec("brand-new-task", {"k": "v"}, queue_name="brand-new-queue", priority=5),
    ]
    jobs = await add_jobs(conn, specs)
    rows = await conn.fetch(
        f"select j.*, t.identifier as task_identifier, q.queue_name"
        f"  from {SCHEMA}._private_jobs as j"
        f"  join {SCHEMA}._private_tasks as t on t.id = j.task_id"
        f"  left join {SCHEMA}._private_job_queues as q on q.id = j.job_queue_id"
        f" where j.id = any($1::bigint[]) order by j.id",
        [job.id for job in jobs],
    )
    assert jobs == [Job.from_record(row) for row in rows]
    assert jobs[-2].timeout == 2.5 and jobs[-2].payload == [1, "two"]
