"""Payload models: a bad payload fails the attempt naming the field; a good one arrives as the model."""

from __future__ import annotations

from typing import Any

import asyncpg
import pydantic

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row


class Invoice(pydantic.BaseModel):
    customer: str
    amount_cents: int


def invoice_registry(received: list[Any]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("bill")
    async def bill(payload: Invoice) -> None:
        received.append(payload)

    return registry


async def test_good_payload_reaches_the_handler_as_the_model(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    received: list[Any] = []
    job = await add_job(pool, "bill", {"customer": "acme", "amount_cents": 1200})

    summary = await Worker(database_url, tasks=invoice_registry(received), options=fast_options()).run_once()

    assert summary.succeeded == 1
    assert received == [Invoice(customer="acme", amount_cents=1200)]
    assert type(received[0]) is Invoice
    assert await job_row(conn, job.id) is None


async def test_bad_payload_fails_the_attempt_naming_the_field_and_keeps_the_payload(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    received: list[Any] = []
    job = await add_job(pool, "bill", {"customer": "acme", "amount_cents": "a lot"})

    summary = await Worker(database_url, tasks=invoice_registry(received), options=fast_options()).run_once()

    assert received == []
    assert (summary.succeeded, summary.failed, summary.permanently_failed) == (0, 1, 0)
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["attempts"] == 1
    assert row["locked_by"] is None
    assert "amount_cents" in row["last_error"]
    assert "customer" not in row["last_error"]  # only the offending field is named
    payload = await conn.fetchval("select payload::text from graphile_worker._private_jobs where id = $1", job.id)
    assert payload == '{"customer":"acme","amount_cents":"a lot"}'
