"""What keeping results costs a core worker draining no-op jobs: the same drain with and without keep_result.

    .venv/bin/python -m bench.tools.results_cost --database-url URL --jobs 20000 --rounds 5

Each round enqueues ``--jobs`` no-op jobs (``add_jobs``, one statement per 1,000), then drains them with one
``Worker.run_once()`` at concurrency 24 (the bench's), timing the drain and the process's CPU over it; the three
kinds alternate within a round so that the machine's drift hits them alike:

* ``plain``: jobs that keep nothing (the fast path and ``complete_jobs``);
* ``flagged``: the same task, every job enqueued with ``keep_result=3600`` (observed path,
  ``complete_jobs_keeping_results``, one row each in ``backfill_job_results`` and a NOTIFY);
* ``task``: a task declared with ``keep_result=3600``, jobs enqueued plainly.

It prints the median jobs/s and CPU ms per 1,000 jobs of each kind, and the ratios to ``plain``. The kept rows are
deleted between rounds. The tables live in a schema of their own (``bench_results``), dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import asyncpg

from backfill.core import JobSpec, SchemaName, TaskRegistry, Worker, WorkerOptions, add_jobs
from backfill.migrations import migrate_all

SCHEMA = SchemaName("bench_results")
KINDS = ("plain", "flagged", "task")


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("results.noop")
    async def noop(payload: Any) -> None:
        return None

    @registry.task("results.kept", keep_result=3600)
    async def kept(payload: Any) -> dict[str, int]:
        return {"n": 1}

    return registry


def _specs(kind: str, jobs: int) -> list[JobSpec]:
    if kind == "plain":
        return [JobSpec("results.noop", {}) for _ in range(jobs)]
    if kind == "flagged":
        return [JobSpec("results.noop", {}, keep_result=3600) for _ in range(jobs)]
    return [JobSpec("results.kept", {}) for _ in range(jobs)]


async def _round(pool: asyncpg.Pool[Any], dsn: str, kind: str, jobs: int) -> tuple[float, float]:
    """One enqueue and drain of ``kind``: (jobs per second, CPU ms per 1,000 jobs)."""
    specs = _specs(kind, jobs)
    for start in range(0, jobs, 1000):
        await add_jobs(pool, specs[start : start + 1000], schema=SCHEMA, returning=False)
    await pool.execute(f"vacuum analyze {SCHEMA.quoted}._private_jobs")
    worker = Worker(dsn, tasks=_registry(), options=WorkerOptions(concurrency=24, schema=SCHEMA))
    cpu, wall = time.process_time(), time.perf_counter()
    summary = await worker.run_once()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert summary.succeeded == jobs, summary
    kept = await pool.fetchval(f"select count(*) from {SCHEMA.quoted}.backfill_job_results")
    assert kept == (0 if kind == "plain" else jobs), (kind, kept)
    await pool.execute(f"truncate {SCHEMA.quoted}.backfill_job_results")
    return jobs / wall, cpu * 1_000_000 / jobs


async def _main(dsn: str, jobs: int, rounds: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    figures: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    try:
        await migrate_all(pool, SCHEMA)
        await pool.execute(f"delete from {SCHEMA.quoted}._private_jobs")
        for number in range(rounds):
            for kind in KINDS if number % 2 == 0 else tuple(reversed(KINDS)):
                figures[kind].append(await _round(pool, dsn, kind, jobs))
    finally:
        await pool.execute(f"drop schema if exists {SCHEMA.quoted} cascade")
        await pool.close()
    plain_rate = statistics.median(rate for rate, _ in figures["plain"])
    plain_cpu = statistics.median(cpu for _, cpu in figures["plain"])
    print(f"{jobs:,} no-op jobs per drain, {rounds} rounds, medians (concurrency 24, one core worker)")
    print(f"{'kind':<8} {'jobs/s':>8} {'CPU ms/1k':>10} {'rate vs plain':>14} {'CPU vs plain':>13}")
    for kind in KINDS:
        rate = statistics.median(r for r, _ in figures[kind])
        cpu = statistics.median(c for _, c in figures[kind])
        print(f"{kind:<8} {rate:>8,.0f} {cpu:>10.1f} {rate / plain_rate:>13.2f}x {cpu / plain_cpu:>12.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    asyncio.run(_main(args.database_url, args.jobs, args.rounds))


if __name__ == "__main__":
    main()
