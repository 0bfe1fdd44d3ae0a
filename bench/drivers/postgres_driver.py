"""postgres: the database's own ceiling for draining Graphile's jobs table, with no worker library.

Two connections form a pipeline: one claims a batch (``FOR UPDATE SKIP LOCKED`` over the same partial index
the workers use, marking the rows locked as a worker does) while the other deletes the batch claimed before
it, as a worker's completer does. No handler runs and no payload is decoded, so the rate is what the
statements alone cost PostgreSQL and the round trips; the table shows how far each worker is from it.
The tables are Graphile's, installed by backfill's migration; the harness fills them with SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from bench.drivers.backfill_driver import BackfillDriver
from bench.drivers.base import JobHandler
from bench.systems import quote_ident

# Rows per claim: the core fetches up to 1,000 no-op jobs at a time (its local queue's cap); 500 keeps two
# batches in flight within that, and larger batches did not drain faster here.
CLAIM_BATCH = 500
# Claimed batches waiting for the deleter: enough to keep both connections busy, no more.
PIPELINE_DEPTH = 2
# When a claim finds nothing, the table is empty or every row is claimed: look again after this long
# (the harness stops the driver once it sees the table empty).
EMPTY_PAUSE = 0.005


class PostgresDriver(BackfillDriver):
    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        jobs = f"{quote_ident(self.schema)}._private_jobs"
        claim = f"""
            update {jobs} j set locked_at = now(), locked_by = $1, attempts = j.attempts + 1
            from (
                select id from {jobs} where is_available and run_at <= now()
                order by priority, run_at limit $2 for update skip locked
            ) c
            where j.id = c.id
            returning j.id"""
        delete = f"delete from {jobs} where id = any($1::bigint[])"
        # The worker claims with synchronous_commit off (a lost claim only frees the job again); so does this.
        claimer = await asyncpg.connect(self.dsn, server_settings={"synchronous_commit": "off"})
        deleter = await asyncpg.connect(self.dsn)
        batches: asyncio.Queue[list[int]] = asyncio.Queue(maxsize=PIPELINE_DEPTH)

        async def claim_loop() -> None:
            while not stop.is_set():
                ids = [row[0] for row in await claimer.fetch(claim, "bench-postgres", CLAIM_BATCH)]
                if ids:
                    await batches.put(ids)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), EMPTY_PAUSE)

        async def delete_loop() -> None:
            while True:
                await deleter.execute(delete, await batches.get())

        tasks: list[asyncio.Task[Any]] = []
        try:
            await claimer.prepare(claim)
            await deleter.prepare(delete)
            tasks = [asyncio.create_task(claim_loop()), asyncio.create_task(delete_loop())]
            on_started()
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({stopped, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            for task in done:
                if task is not stopped:
                    task.result()  # a loop that failed: say why
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await claimer.close()
            await deleter.close()
