"""One core worker draining no-op jobs, for comparing event loops by instructions under callgrind.

    .venv/bin/python -m bench.tools.loop_drain enqueue --jobs 3000
    valgrind --tool=callgrind .venv/bin/python -m bench.tools.loop_drain drain [--uvloop]

``drain`` runs ``Worker.run_once()`` (concurrency 24, the bench's) until the jobs are gone; run it for two job
counts and divide the difference of the instruction counts by the difference of the counts: the fixed cost
(interpreter, imports, connecting) cancels out and what is left is the cost of one job.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import asyncpg

from backfill.core import JobSpec, SchemaName, TaskRegistry, Worker, WorkerOptions, add_jobs
from backfill.migrations import migrate_all

SCHEMA = SchemaName("procbench_loop")


async def _enqueue(dsn: str, jobs: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await migrate_all(pool, SCHEMA)
        await pool.execute(f"delete from {SCHEMA.quoted}._private_jobs")
        await add_jobs(pool, [JobSpec("loop.noop", {}) for _ in range(jobs)], schema=SCHEMA)
    finally:
        await pool.close()


async def _drain(dsn: str) -> None:
    registry = TaskRegistry()

    @registry.task("loop.noop")
    async def noop(payload: Any) -> None:
        return None

    worker = Worker(dsn, tasks=registry, options=WorkerOptions(concurrency=24, schema=SCHEMA))
    summary = await worker.run_once()
    print(f"succeeded={summary.succeeded}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("enqueue", "drain"))
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    asyncio.run(_enqueue(args.database_url, args.jobs) if args.command == "enqueue" else _drain(args.database_url))


if __name__ == "__main__":
    main()
