"""``BackfillClient.enqueue_many`` against a real database: jobs/s, and the client process's CPU per job.

    .venv/bin/python -m bench.tools.client_enqueue --database-url URL [--batches 40] [--batch 1000]

The bench's enqueue row for backfill-runner (one ``enqueue_many`` per batch on one connection), alone in a
process, in a schema of its own (``bench_client_enqueue``, dropped at the end). The client's CPU time
(``time.process_time``) is the part of a bulk enqueue that the layer's Python code decides, and it moves far
less with the machine's load than jobs/s does: for a before/after comparison, run this from both trees in turn
(``PYTHONPATH=<other tree>``) and compare pair by pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import asyncpg

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core import SchemaName
from backfill.migrations import migrate_all

SCHEMA = SchemaName("bench_client_enqueue")
TASK = "bench.noop"


async def _main(dsn: str, batches: int, batch: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate_all(connection, SCHEMA)
        await connection.execute(f"truncate {SCHEMA.quoted}._private_jobs")
        async with BackfillClient(dsn, schema=SCHEMA) as client:
            # One call first: the pool, the task catalog's answer and the prepared statement are then in place.
            await client.enqueue_many([Enqueue(TASK, {"i": 0})], connection=connection)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(batches):
                await client.enqueue_many([Enqueue(TASK, {"i": i}) for i in range(batch)], connection=connection)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await connection.execute(f"drop schema if exists {SCHEMA.quoted} cascade")
        await connection.close()
    jobs = batches * batch
    print(f"{jobs / wall:,.0f} jobs/s, client CPU {cpu * 1e6 / jobs:.2f} us/job ({batches} x enqueue_many of {batch})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    if not args.database_url:
        parser.error("--database-url (or DATABASE_URL) is required")
    asyncio.run(_main(args.database_url, args.batches, args.batch))


if __name__ == "__main__":
    main()
