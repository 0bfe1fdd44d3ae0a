"""Typed task handles against a real database: enqueue through the handle (async and blocking), payloads
validated before anything is written, and a worker handing its handler the validated dataclass."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from typing_extensions import TypedDict

import backfill
from backfill.client import default as default_module
from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from backfill.core import JobContext, JobSpecError, TaskRegistry, Worker, add_job
from backfill.priorities import Priority
from backfill.tasks.defaults import TASK_DEFAULTS
from backfill.tasks.handles import AsyncTask, Task
from backfill.tasks.payloads import PAYLOAD_CHECKS
from tests.integration.worker_support.helpers import fast_options, job_count, job_row

SECRET = "s3cr3t-value-8812"  # a payload value: never in an error, a job's last_error or a log


@dataclasses.dataclass
class Email:
    to: str
    retries: int = 0


class Sms(TypedDict):
    number: str


@dataclasses.dataclass
class Tasks:
    registry: TaskRegistry
    send_email: AsyncTask[Email, None]
    send_sms: Task[Sms, None]
    received: list[Any]


@pytest.fixture
def tasks() -> Iterator[Tasks]:
    registry = TaskRegistry()
    received: list[Any] = []

    @backfill.task("typed.send_email", registry=registry, priority=Priority.FAST_DEFAULT)
    async def send_email(payload: Email, ctx: JobContext) -> None:
        received.append(payload)

    @backfill.task("typed.send_sms", registry=registry)
    def send_sms(payload: Sms) -> None:
        received.append(payload)

    yield Tasks(registry, send_email, send_sms, received)
    for identifier in registry.identifiers:
        PAYLOAD_CHECKS.pop(identifier, None)
        TASK_DEFAULTS.pop(identifier, None)


async def _payload(conn: asyncpg.Connection[Any], job_id: int) -> Any:
    return json.loads(await conn.fetchval("select payload from graphile_worker._private_jobs where id = $1", job_id))


async def test_enqueue_through_the_handle(tasks: Tasks, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    before = datetime.now(UTC)
    job = await tasks.send_email.enqueue(Email("ada@example.com"), delay=60, client=BackfillClient(pool))

    assert job.task_identifier == "typed.send_email"
    assert job.priority == Priority.FAST_DEFAULT  # the task's default
    assert job.run_at >= before + timedelta(seconds=60)
    assert await _payload(conn, job.id) == {"to": "ada@example.com", "retries": 0}


async def test_enqueue_uses_the_default_client(
    tasks: Tasks, database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    try:
        job = await tasks.send_sms.enqueue({"number": "+15550100"})
    finally:
        await default_module.close_default_client()
    assert await _payload(conn, job.id) == {"number": "+15550100"}


async def test_enqueue_many_with_payloads_and_requests(
    tasks: Tasks, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool)
    handle = tasks.send_email
    jobs = await handle.enqueue_many(
        [Email(f"{n}@example.com") for n in range(3)] + [handle.request(Email("vip@example.com"), priority=-20)],
        client=client,
    )
    assert [job.priority for job in jobs] == [-5, -5, -5, -20]
    assert [(await _payload(conn, job.id))["to"] for job in jobs] == [
        "0@example.com",
        "1@example.com",
        "2@example.com",
        "vip@example.com",
    ]
    assert await handle.enqueue_many([Email("x"), Email("y")], client=client, returning=False) == 2


async def test_a_bad_payload_is_refused_before_anything_is_written(
    tasks: Tasks, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool)
    bad = {"to": "ada@example.com", "retries": SECRET}
    attempts: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("payload.retries", lambda: tasks.send_email.enqueue(bad, client=client)),  # type: ignore[arg-type]
        ("payload.retries", lambda: client.enqueue("typed.send_email", bad)),  # by name: the task is known here
        ("payload.number", lambda: client.enqueue("typed.send_sms", {"number": 15550100})),
        # Requests of one shape share a spec built once: the third is still checked.
        (
            "requests[2].payload.retries",
            lambda: client.enqueue_many([Enqueue("typed.send_email", p) for p in ({"to": "a"}, {"to": "b"}, bad)]),
        ),
        (
            "requests[1].payload.to",
            lambda: tasks.send_email.enqueue_many([Email("a"), Email(1, 1)], client=client),  # type: ignore[arg-type]
        ),
    ]
    for field, attempt in attempts:
        with pytest.raises(JobSpecError) as caught:
            await attempt()
        assert caught.value.field == field
        assert SECRET not in str(caught.value)
    assert await job_count(conn) == 0


async def test_the_worker_hands_the_handler_the_validated_dataclass(
    tasks: Tasks, database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool)
    await tasks.send_email.enqueue(Email("ada@example.com", 2), client=client)
    await tasks.send_sms.enqueue({"number": "+1"}, client=client)
    # Jobs enqueued elsewhere (SQL, Node) are validated by the worker alone: coerced, or failed by field name.
    await add_job(pool, "typed.send_email", {"to": "sql@example.com", "retries": "3"})
    bad = await add_job(pool, "typed.send_email", {"to": "x", "retries": SECRET}, max_attempts=1)

    summary = await Worker(database_url, tasks=tasks.registry, options=fast_options()).run_once()

    assert (summary.succeeded, summary.failed) == (3, 1)
    emails = sorted((item for item in tasks.received if isinstance(item, Email)), key=lambda email: email.to)
    assert emails == [Email("ada@example.com", 2), Email("sql@example.com", 3)]
    assert {"number": "+1"} in tasks.received
    row = await job_row(conn, bad.id)
    assert row is not None
    assert "retries" in row["last_error"] and "int_parsing" in row["last_error"]
    assert SECRET not in row["last_error"]


async def test_the_blocking_form(tasks: Tasks, database_url: str, conn: asyncpg.Connection[Any]) -> None:
    def enqueue_blocking() -> list[int]:
        with SyncBackfillClient(database_url) as client:
            one = tasks.send_email.sync.enqueue(Email("ada@example.com"), client=client)
            many = tasks.send_email.sync.enqueue_many([Email("a"), Email("b")], client=client)
            # In the caller's transaction: the job exists once it commits.
            with psycopg.connect(database_url) as db:
                in_transaction = tasks.send_sms.sync.enqueue({"number": "+1"}, client=client, connection=db)
                with pytest.raises(JobSpecError, match=r"^payload\.number: "):
                    tasks.send_sms.sync.enqueue({"number": 1}, client=client, connection=db)  # type: ignore[typeddict-item]
            return [one.id, *(job.id for job in many), in_transaction.id]

    ids = await asyncio.to_thread(enqueue_blocking)

    assert [(await _payload(conn, job_id)) for job_id in ids] == [
        {"to": "ada@example.com", "retries": 0},
        {"to": "a", "retries": 0},
        {"to": "b", "retries": 0},
        {"number": "+1"},
    ]
