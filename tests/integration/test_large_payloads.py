"""Large payloads on the claim path: a batch of them is decoded one payload per loop turn, so the event loop
stalls for one payload's decode at most, not for the whole batch's (a thread would not help: the JSON decoder
holds the GIL)."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import asyncpg

from backfill.core import SchemaName, add_jobs
from backfill.core.jobs import JobSpec
from backfill.core.run.claims import Claims
from backfill.core.run.queries import WorkerQueries

BIG_JOBS = 10


def big_payload(n: int) -> dict[str, Any]:
    # About 1.2 MB of JSON made of many small objects, as a real document would be (decodes in ~7 ms here).
    return {
        "n": n,
        "items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"], "note": "x" * 40} for i in range(12_000)],
    }


async def _longest_gap_while(work: asyncio.Future[Any]) -> float:
    """The longest time the loop went without running a 1 ms ticker while ``work`` ran, in CPU time of the loop's
    thread: time other processes took the CPU (two cores shared by several test runs) is not the loop's stall."""
    longest = 0.0
    last = time.thread_time()
    while not work.done():
        await asyncio.sleep(0.001)
        now = time.thread_time()
        longest = max(longest, now - last)
        last = now
    return longest


async def test_a_batch_of_large_payloads_is_decoded_one_per_loop_turn(pool: asyncpg.Pool[Any]) -> None:
    specs = [JobSpec("big", big_payload(n)) for n in range(BIG_JOBS)]
    await add_jobs(pool, specs)
    texts = [spec.payload_json for spec in specs]
    gc.collect()
    gc.disable()
    started = time.thread_time()
    for text in texts:
        json.loads(text)
    whole_batch = time.thread_time() - started
    gc.enable()

    schema = SchemaName.coerce(None)
    claims = Claims(pool, WorkerQueries.for_schema(schema), "test-worker", ["big"])
    async with pool.acquire() as connection:
        await claims.load_task_names(connection)
    # A full collection among this many new objects pauses the loop ~30 ms on its own: a real cost, but not the
    # one measured here, and it would land at a random point of either measurement.
    gc.collect()
    gc.disable()
    try:
        claim = asyncio.ensure_future(claims.claim(BIG_JOBS))
        longest_gap = await asyncio.wait_for(_longest_gap_while(claim), 30)
        jobs = await claim
    finally:
        gc.enable()
        await claims.close()

    assert sorted(job.payload["n"] for job in jobs) == list(range(BIG_JOBS))
    # Decoding the whole batch in one go stalls the loop for about `whole_batch` (~140 ms here); one payload
    # per turn stalls it for about a tenth of that. A third leaves room for a loaded machine.
    assert longest_gap < whole_batch / 3, (
        f"loop stalled {longest_gap * 1000:.1f} ms; whole batch {whole_batch * 1000:.1f} ms"
    )
