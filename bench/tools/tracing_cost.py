"""What OpenTelemetry tracing costs: a client and a runner never instrumented, instrumented, and uninstrumented.

    .venv/bin/python -m bench.tools.tracing_cost --database-url URL [--jobs 10000] [--rounds 3]

Each round enqueues 1,000 jobs one ``enqueue`` at a time and the rest in one ``enqueue_many``, then drains them
all with ``WorkerRunner.run_once`` (Bulk lane at concurrency 8, a no-op task). The modes alternate within a round,
off → on → after: ``on`` is ``backfill.integrations.opentelemetry.instrument(client=, runner=)`` with the SDK's
``SimpleSpanProcessor`` and in-memory exporter, ``after`` the same client and runner after ``uninstrument()``.
Prints the median µs per job of each. The jobs live in a schema of their own (``bench_tracing``), dropped at the
end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import asyncpg
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core import SchemaName, TaskRegistry
from backfill.integrations.opentelemetry import instrument
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings

SCHEMA = SchemaName("bench_tracing")
SINGLE = 1000
MODES = ("off", "on", "after")
FIGURES = ("enqueue", "enqueue_many", "worker")


async def _main(dsn: str, jobs: int, rounds: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    assert pool is not None
    client = BackfillClient(pool, schema=SCHEMA)
    registry = TaskRegistry()

    @registry.task("bench.noop")
    async def noop(payload: Any) -> None:
        return None

    settings = BackfillSettings.load(
        env_file=None, database_url=dsn, schema_name=SCHEMA, bulk_queue_concurrency=8, fast_queue_concurrency=2
    )
    runner = WorkerRunner(settings, tasks=registry)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    figures: dict[str, dict[str, list[float]]] = {mode: {name: [] for name in FIGURES} for mode in MODES}

    async def one_round(mode: str) -> None:
        tracing = instrument(client=client, runner=runner, tracer_provider=provider) if mode == "on" else None
        started = time.perf_counter()
        for n in range(SINGLE):
            await client.enqueue("bench.noop", {"n": n})
        single = (time.perf_counter() - started) / SINGLE
        started = time.perf_counter()
        await client.enqueue_many([Enqueue("bench.noop", {"n": n}) for n in range(jobs - SINGLE)], returning=False)
        many = (time.perf_counter() - started) / (jobs - SINGLE)
        started = time.perf_counter()
        summary = await runner.run_once()
        drain = (time.perf_counter() - started) / jobs
        assert summary.succeeded >= jobs, summary
        if tracing is not None:
            tracing.uninstrument()
        exporter.clear()
        if mode in figures:
            for name, seconds in zip(FIGURES, (single, many, drain), strict=True):
                figures[mode][name].append(seconds * 1e6)

    try:
        await client.migrate()
        await one_round("warm-up")
        for _ in range(rounds):
            for mode in MODES:
                await one_round(mode)
    finally:
        await pool.execute(f"drop schema if exists {SCHEMA.quoted} cascade")
        await pool.close()
    print(f"{jobs:,} no-op jobs per round ({SINGLE:,} enqueued one by one), medians of {rounds} rounds, µs per job")
    print(f"{'mode':<6} " + " ".join(f"{name:>13}" for name in FIGURES))
    for mode in MODES:
        print(f"{mode:<6} " + " ".join(f"{statistics.median(figures[mode][name]):>13.1f}" for name in FIGURES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    asyncio.run(_main(args.database_url, args.jobs, args.rounds))


if __name__ == "__main__":
    main()
