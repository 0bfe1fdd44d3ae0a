"""Trace context and Node: a job carrying ``backfill:trace`` runs normally on Node's graphile-worker, and a job
Node enqueued (no trace context) is traced by backfill as a root attempt without links."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.integrations.opentelemetry import instrument
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.compat.ledger import backfill_tasks, create_ledger, read_ledger
from tests.compat.nodejs import NodeJob, NodeRunner

pytestmark = pytest.mark.compat


def _memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_node_runs_jobs_that_carry_a_trace_context(database_url: str, node: NodeRunner) -> None:
    provider, _ = _memory()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await create_ledger(pool)  # type: ignore[arg-type]
        client = BackfillClient(pool)
        with instrument(client=client, tracer_provider=provider):
            one = await client.enqueue("record", {"name": "single"})
            many = await client.enqueue_many([Enqueue("record", {"name": f"bulk-{n}"}) for n in range(2)])
        flags = await pool.fetch("select id, flags from graphile_worker._private_jobs order by id")

        await node.run_once(database_url)

        ledger = await read_ledger(pool)  # type: ignore[arg-type]
        left = await pool.fetchval("select count(*) from graphile_worker._private_jobs")
    finally:
        await pool.close()

    # The flag was there when Node took the jobs...
    assert [row["id"] for row in flags] == [one.id, *(job.id for job in many)]
    assert all('"backfill:trace=00-' in row["flags"] for row in flags)
    # ...and Node ran each once, first time, with its payload, and completed it.
    assert sorted((row.job_id, row.runner, row.attempt, row.payload["name"]) for row in ledger) == [
        (one.id, "node", 1, "single"),
        (many[0].id, "node", 1, "bulk-0"),
        (many[1].id, "node", 1, "bulk-1"),
    ]
    assert left == 0
    provider.shutdown()


async def test_a_job_node_enqueued_is_a_root_attempt_in_backfill(database_url: str, node: NodeRunner) -> None:
    provider, exporter = _memory()
    [job_id] = await node.enqueue(database_url, [NodeJob("record", {"name": "from-node"})])
    settings = BackfillSettings.load(env_file=None, database_url=database_url, poll_interval_ms=1000)
    runner = WorkerRunner(settings, tasks=backfill_tasks())
    connection: Any = await asyncpg.connect(database_url)
    try:
        await create_ledger(connection)
        with instrument(runner=runner, tracer_provider=provider):
            await runner.run_once()
        ledger = await read_ledger(connection)
    finally:
        await connection.close()

    assert [(row.job_id, row.runner) for row in ledger] == [(job_id, "backfill")]
    [span] = [span for span in exporter.get_finished_spans() if span.kind is SpanKind.CONSUMER]
    assert span.name == "process record" and span.parent is None and list(span.links) == []
    assert dict(span.attributes or {})["messaging.message.id"] == str(job_id)
    provider.shutdown()
