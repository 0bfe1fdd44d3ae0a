"""PostgreSQL-only ceiling: claim and complete no-op jobs with SQL alone, no worker around the statements.

Standalone (``python bench/ceiling.py --database-url URL``): it shares nothing with the rest of bench/. Each of
``--connections`` connections loops "claim up to --batch jobs, then complete them" until the table is empty, with
one of two pairs of statements:

* ``simple``: the simplest shape, ``update ... where id in (select ... for update skip locked limit N)
  returning`` and ``delete ... where id = any($1)``: no named queues, no fencing;
* ``worker``: the worker's own fetch_jobs and complete_jobs (backfill/core/sql), as backfill.core loads them.

It prints jobs/s, the mean time of each statement (its round trip, client to server and back) and the CPU time
the server's backends spent per job (/proc/<pid>/schedstat, so PostgreSQL must run on this machine): the last
is the least disturbed by other work on a shared machine. The shapes run alternately, for several rounds:
compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg

from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import migrate_own
from backfill.core.run.queries import WorkerQueries
from backfill.core.schema import SchemaName

SCHEMA = SchemaName("bench_ceiling")
TASK = "noop"

SIMPLE_CLAIM = """
update {s}._private_jobs as j
   set attempts = j.attempts + 1, locked_by = $1::text, locked_at = now()
 where j.id in (
   select jobs.id from {s}._private_jobs as jobs
    where jobs.is_available = true and jobs.run_at <= now()
    order by jobs.priority, jobs.run_at
    limit $2::int
      for update skip locked
 )
returning j.id, j.locked_at
"""
SIMPLE_COMPLETE = "delete from {s}._private_jobs where id = any($1::bigint[])"


async def prepare(dsn: str, jobs: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f"drop schema if exists {SCHEMA.quoted} cascade")
        await migrate(connection, SCHEMA)
        await migrate_own(connection, SCHEMA)
        await connection.execute(f"select {SCHEMA.quoted}.add_job($1::text)", TASK)  # registers the task
        await connection.execute(f"delete from {SCHEMA.quoted}._private_jobs")
        await connection.execute(
            f"insert into {SCHEMA.quoted}._private_jobs (task_id)"
            f" select (select id from {SCHEMA.quoted}._private_tasks where identifier = $1::text)"
            f" from generate_series(1, $2::int)",
            TASK,
            jobs,
        )
        await connection.execute(f"vacuum analyze {SCHEMA.quoted}._private_jobs")
    finally:
        await connection.close()


class Loop:
    """One connection claiming and completing until nothing is left; times each statement."""

    def __init__(self, shape: str, batch: int, worker_id: str) -> None:
        self.shape, self.batch, self.worker_id = shape, batch, worker_id
        self.claim_times: list[float] = []
        self.complete_times: list[float] = []
        self.done = 0
        queries = WorkerQueries.for_schema(SCHEMA)
        self.fetch_jobs, self.complete_jobs = queries.fetch_jobs, queries.complete_jobs
        self.simple_claim = SIMPLE_CLAIM.format(s=SCHEMA.quoted)
        self.simple_complete = SIMPLE_COMPLETE.format(s=SCHEMA.quoted)

    async def run(self, connection: asyncpg.Connection[Any]) -> None:
        await connection.execute("set synchronous_commit = off")  # as the worker's claim connection
        empty_in_a_row = 0
        while empty_in_a_row < 3:  # a concurrent claim may hide the last rows for a moment
            started = time.perf_counter()
            rows = await self._claim(connection)
            self.claim_times.append(time.perf_counter() - started)
            if not rows:
                empty_in_a_row += 1
                continue
            empty_in_a_row = 0
            started = time.perf_counter()
            await self._complete(connection, rows)
            self.complete_times.append(time.perf_counter() - started)
            self.done += len(rows)

    async def _claim(self, connection: asyncpg.Connection[Any]) -> list[Any]:
        if self.shape == "simple":
            return await connection.fetch(self.simple_claim, self.worker_id, self.batch)
        return await connection.fetch(self.fetch_jobs, self.worker_id, [TASK], self.batch)

    async def _complete(self, connection: asyncpg.Connection[Any], rows: list[Any]) -> None:
        ids = [row["id"] for row in rows]
        if self.shape == "simple":
            await connection.execute(self.simple_complete, ids)
        else:
            await connection.fetch(self.complete_jobs, ids, self.worker_id, [row["locked_at"] for row in rows])


def backend_cpu_seconds(pids: list[int]) -> float:
    """CPU time these server processes have run (the first field of /proc/<pid>/schedstat, in nanoseconds: finer
    than the clock ticks of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            total += int(schedstat.read().split()[0])
    return total / 1e9


async def measure(dsn: str, shape: str, jobs: int, batch: int, connections: int) -> dict[str, float]:
    await prepare(dsn, jobs)
    loops = [Loop(shape, batch, f"ceiling-{n}") for n in range(connections)]
    opened = [await asyncpg.connect(dsn) for _ in loops]
    try:
        pids = [connection.get_server_pid() for connection in opened]
        cpu_before = backend_cpu_seconds(pids)
        started = time.perf_counter()
        await asyncio.gather(*(loop.run(connection) for loop, connection in zip(loops, opened, strict=True)))
        elapsed = time.perf_counter() - started
        cpu = backend_cpu_seconds(pids) - cpu_before
    finally:
        for connection in opened:
            await connection.close()
    done = sum(loop.done for loop in loops)
    claims = [t for loop in loops for t in loop.claim_times]
    completes = [t for loop in loops for t in loop.complete_times]
    return {
        "jobs_per_s": done / elapsed,
        "claim_ms": 1000 * statistics.mean(claims),
        "complete_ms": 1000 * statistics.mean(completes),
        "pg_us_per_job": 1e6 * cpu / done,
        "done": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--connections", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shapes", default="simple,worker")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for shape in args.shapes.split(","):
            result = asyncio.run(measure(args.database_url, shape, args.jobs, args.batch, args.connections))
            assert result["done"] == args.jobs, result
            results.setdefault(shape, []).append(result)
            print(
                f"{shape:7} {result['jobs_per_s']:9.0f} jobs/s  claim {result['claim_ms']:6.2f} ms"
                f"  complete {result['complete_ms']:6.2f} ms  postgres {result['pg_us_per_job']:5.1f} us/job",
                flush=True,
            )
    for shape, rounds in results.items():
        print(
            f"median {shape:7} {statistics.median(r['jobs_per_s'] for r in rounds):9.0f} jobs/s"
            f"  claim {statistics.median(r['claim_ms'] for r in rounds):6.2f} ms"
            f"  complete {statistics.median(r['complete_ms'] for r in rounds):6.2f} ms"
            f"  postgres {statistics.median(r['pg_us_per_job'] for r in rounds):5.1f} us/job"
        )


if __name__ == "__main__":
    main()
