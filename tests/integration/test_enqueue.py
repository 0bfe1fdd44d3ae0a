"""add_job/add_jobs from Python: defaults, every option, payload kinds, names and identities."""

from __future__ import annotations

import json
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pydantic
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.enqueue import add_job, add_job_spec, add_jobs
from backfill.core.errors import JobSpecError
from backfill.core.jobs import Job, JobSpec

JOBS = "graphile_worker._private_jobs"


class Receipt(pydantic.BaseModel):
    order_id: int
    total: float
    sent_at: datetime


async def _raw(conn: asyncpg.Connection[Any], job_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select *, payload::text as payload_text, flags::text as flags_text from {JOBS} where id = $1", job_id
    )
    assert row is not None, f"job {job_id} is not in the table"
    return row


async def test_defaults(conn: asyncpg.Connection[Any]) -> None:
    before = await conn.fetchval("select clock_timestamp()")
    job = await add_job(conn, "send_email")
    after = await conn.fetchval("select clock_timestamp()")
    row = await _raw(conn, job.id)

    assert row["payload_text"] == "{}"
    assert before <= row["run_at"] <= after
    assert (row["max_attempts"], row["priority"], row["attempts"], row["revision"]) == (25, 0, 0, 0)
    assert (row["job_queue_id"], row["key"], row["flags"], row["last_error"]) == (None, None, None, None)
    assert (row["locked_at"], row["locked_by"]) == (None, None)

    assert isinstance(job, Job)
    assert job.task_identifier == "send_email"
    assert (job.payload, job.queue_name, job.max_attempts, job.priority, job.flags) == ({}, None, 25, 0, frozenset())
    assert job.run_at == row["run_at"]
    assert job.task_id == row["task_id"]


async def test_every_option_round_trips(conn: asyncpg.Connection[Any]) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-5)))
    job = await add_job(
        conn,
        "reports.build",
        {"report": 9},
        queue_name="reports",
        run_at=run_at,
        max_attempts=3,
        job_key="report-9",
        priority=-7,
        flags=["slow", "nightly"],
    )
    row = await _raw(conn, job.id)
    view = await conn.fetchrow("select * from graphile_worker.jobs where id = $1", job.id)
    assert view is not None

    assert row["payload_text"] == '{"report":9}'
    assert row["run_at"] == run_at
    assert (row["max_attempts"], row["key"], row["priority"]) == (3, "report-9", -7)
    assert json.loads(row["flags_text"]) == {"slow": True, "nightly": True}
    assert await conn.fetchval(f"select jsonb_typeof(flags) from {JOBS} where id = $1", job.id) == "object"
    assert (view["task_identifier"], view["queue_name"]) == ("reports.build", "reports")

    assert (job.task_identifier, job.queue_name, job.key) == ("reports.build", "reports", "report-9")
    assert (job.run_at, job.max_attempts, job.priority) == (run_at, 3, -7)
    assert job.flags == frozenset({"slow", "nightly"})
    assert job.payload == {"report": 9}


async def test_extreme_values_fit_the_columns(conn: asyncpg.Connection[Any]) -> None:
    low = await add_job(conn, "t" * 128, queue_name="q" * 128, job_key="k" * 512, priority=-32768, max_attempts=1)
    high = await add_job(conn, "t", priority=32767, max_attempts=32767)
    assert (await _raw(conn, low.id))["priority"] == -32768
    assert (await _raw(conn, high.id))["max_attempts"] == 32767
    assert low.task_identifier == "t" * 128


@pytest.mark.parametrize(
    ("payload", "stored"),
    [
        ({"b": 2, "a": [1, {"c": None}]}, '{"b":2,"a":[1,{"c":null}]}'),
        ([{"id": 1}, {"id": 2}], '[{"id":1},{"id":2}]'),
        (
            Receipt(order_id=4, total=9.5, sent_at=datetime(2030, 1, 1, tzinfo=UTC)),
            '{"order_id":4,"total":9.5,"sent_at":"2030-01-01T00:00:00Z"}',
        ),
        (None, "{}"),
    ],
    ids=["dict", "list", "pydantic", "none"],
)
async def test_payload_kinds_are_stored_as_given(conn: asyncpg.Connection[Any], payload: Any, stored: str) -> None:
    job = await add_job(conn, "t", payload)
    # The column is json (not jsonb): the text comes back byte for byte, key order included.
    assert (await _raw(conn, job.id))["payload_text"] == stored
    assert job.payload == json.loads(stored)


async def test_unicode_and_escapes_survive(conn: asyncpg.Connection[Any]) -> None:
    text = "Zoë 🚀 \\ \" ' \n"
    job = await add_job(conn, "t", {"text": text})
    # Read back by PostgreSQL itself, so an escaping mismatch between Python and the server would show.
    assert await conn.fetchval(f"select payload->>'text' from {JOBS} where id = $1", job.id) == text
    assert job.payload == {"text": text}
    # Stored as written, not as \\uXXXX escapes.
    assert "Zoë 🚀" in (await _raw(conn, job.id))["payload_text"]


async def test_invalid_spec_is_refused_before_the_database(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(JobSpecError) as caught:
        await add_job(conn, "t", priority=40000)
    assert caught.value.field == "priority"
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0
    assert await conn.fetchval("select count(*) from graphile_worker._private_tasks") == 0


async def test_add_job_through_a_pool(pool: asyncpg.Pool[Any]) -> None:
    job = await add_job(pool, "pooled", {"n": 1}, queue_name="pq")
    assert (job.task_identifier, job.queue_name, job.payload) == ("pooled", "pq", {"n": 1})
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 1


async def test_add_jobs_many_tasks_and_queues(conn: asyncpg.Connection[Any]) -> None:
    tasks = ["mail.send", "pdf.render", "cache.warm"]
    queues = ["alpha", "beta", None]
    specs = [
        JobSpec(tasks[n % 3], {"n": n}, queue_name=queues[(n // 3) % 3], priority=n % 5, flags=["f"] if n % 2 else None)
        for n in range(30)
    ]
    jobs = await add_jobs(conn, specs)

    assert len(jobs) == 30
    by_n = {job.payload["n"]: job for job in jobs}
    assert sorted(by_n) == list(range(30))
    for spec in specs:
        job = by_n[spec.payload["n"]]
        assert (job.task_identifier, job.queue_name, job.priority) == (spec.identifier, spec.queue_name, spec.priority)
        assert job.flags == (frozenset({"f"}) if spec.flags else frozenset())
    view = await conn.fetch("select id, task_identifier, queue_name from graphile_worker.jobs")
    assert {(r["id"], r["task_identifier"], r["queue_name"]) for r in view} == {
        (j.id, j.task_identifier, j.queue_name) for j in jobs
    }
    assert await conn.fetchval("select count(*) from graphile_worker._private_tasks") == 3
    assert await conn.fetchval("select count(*) from graphile_worker._private_job_queues") == 2


async def test_add_jobs_with_nothing_to_add(conn: asyncpg.Connection[Any]) -> None:
    assert await add_jobs(conn, []) == []


async def test_add_jobs_refuses_things_that_are_not_specs(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(JobSpecError) as caught:
        await add_jobs(conn, [JobSpec("t"), {"identifier": "t"}])  # type: ignore[list-item]
    assert caught.value.field == "specs[1]"
    with pytest.raises(JobSpecError) as caught:
        await add_jobs(conn, JobSpec("t"))  # type: ignore[call-overload]
    assert caught.value.field == "specs"
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_add_jobs_keeps_options_and_defaults(conn: asyncpg.Connection[Any]) -> None:
    run_at = datetime(2032, 1, 1, tzinfo=UTC)
    [defaults, options] = sorted(
        await add_jobs(
            conn,
            [
                JobSpec("t", {"which": "defaults"}),
                JobSpec("t", {"which": "options"}, run_at=run_at, max_attempts=2, job_key="k", flags=["x"]),
            ],
        ),
        key=lambda job: job.payload["which"],
    )
    assert (defaults.max_attempts, defaults.priority, defaults.key, defaults.flags) == (25, 0, None, frozenset())
    assert (options.run_at, options.max_attempts, options.key, options.flags) == (run_at, 2, "k", frozenset({"x"}))


async def test_add_jobs_carries_every_field_exactly(conn: asyncpg.Connection[Any]) -> None:
    # Specs travel as JSON: offsets, microseconds, quotes in names and non-ASCII text must all survive.
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    spec = JobSpec(
        'task "quoted"',
        {"text": 'Zoë \\ " 🚀'},
        queue_name="queue 'q'",
        run_at=run_at,
        max_attempts=3,
        job_key="key\nline",
        priority=-7,
        flags=["a b", "ö"],
    )
    [job] = await add_jobs(conn, [spec])
    assert (job.task_identifier, job.payload, job.queue_name, job.run_at) == (
        'task "quoted"',
        {"text": 'Zoë \\ " 🚀'},
        "queue 'q'",
        run_at,
    )
    assert (job.max_attempts, job.key, job.priority, job.flags) == (3, "key\nline", -7, frozenset({"a b", "ö"}))


async def _sequence_position(conn: asyncpg.Connection[Any], sequence: str) -> int:
    row = await conn.fetchrow(f"select last_value, is_called from graphile_worker.{sequence}")
    assert row is not None
    return int(row["last_value"]) if row["is_called"] else 0


async def test_known_task_and_queue_names_do_not_burn_identity_values(conn: asyncpg.Connection[Any]) -> None:
    for _ in range(3):
        await add_job(conn, "same.task", queue_name="same-queue")
    await add_jobs(conn, [JobSpec("same.task", queue_name="same-queue") for _ in range(3)])
    assert await _sequence_position(conn, "tasks_id_seq") == 1
    assert await _sequence_position(conn, "job_queues_id_seq") == 1

    # The next new names take the very next ids.
    other = await add_job(conn, "other.task", queue_name="other-queue")
    assert other.task_id == 2
    assert other.job_queue_id == 2
    assert await conn.fetchval("select count(*) from graphile_worker._private_tasks") == 2


async def test_add_job_spec_enqueues_a_built_spec_with_its_timeout_flag(pool: asyncpg.Pool[Any]) -> None:
    spec = JobSpec("report", {"day": 1}, priority=3, flags=["nightly"], timeout=90)
    job = await add_job_spec(pool, spec)
    assert (job.task_identifier, job.payload, job.priority) == ("report", {"day": 1}, 3)
    assert job.flags == frozenset({"nightly", "backfill:timeout=90"})
    assert job.timeout == 90.0


async def test_add_job_spec_refuses_anything_but_a_job_spec(pool: asyncpg.Pool[Any]) -> None:
    with pytest.raises(JobSpecError, match="spec: must be a JobSpec, not dict"):
        await add_job_spec(pool, {"identifier": "report"})  # type: ignore[arg-type]


async def test_a_payload_postgres_cannot_receive_is_a_spec_error_that_does_not_quote_it(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # A lone surrogate is not valid Unicode: asyncpg refuses to encode it, with a message quoting the value.
    payload = {"card": "4111-secret-\ud800-1111"}
    attempts: list[Callable[[], Awaitable[object]]] = [
        lambda: add_job(pool, "mail", payload),
        lambda: add_jobs(pool, [JobSpec("mail", {"ok": 1}), JobSpec("mail", payload)]),
        lambda: BackfillClient(pool).enqueue("mail", payload),
    ]
    for attempt in attempts:
        with pytest.raises(JobSpecError) as caught:
            await attempt()
        rendered = "".join(traceback.format_exception(caught.value))
        assert "secret" not in rendered, rendered
        assert caught.value.field in {"payload", "specs"}
        assert "surrogates not allowed" in str(caught.value)
    assert await conn.fetchval("select count(*) from graphile_worker._private_jobs") == 0
