"""Python time per job of preparing a bulk enqueue, no database: core ``JobSpec``s against the client's
``Enqueue`` requests turned into specs (``BackfillClient.enqueue_many``'s own step), each followed by the
arguments of the ``insert_jobs`` statement. What the layer adds per job before anything is sent.

    .venv/bin/python -m bench.tools.enqueue_python [--batches 200] [--batch 1000]

Rounds alternate core and layer; the median of each is printed, in microseconds per job.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core import JobSpec, TaskRegistry
from backfill.core.enqueue import insert_jobs_arguments
from backfill.priorities import Priority
from backfill.tasks.defaults import task

TASK = "bench.enqueue_python"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=1000)
    arguments = parser.parse_args()

    # Declared here with a default, so the client finds the task's defaults in this process and never asks a
    # database for them (it would for a task it never imported).
    @task(TASK, priority=Priority.BULK_DEFAULT, registry=TaskRegistry())
    async def handler(payload: dict[str, Any]) -> None:
        return None

    client = BackfillClient("postgresql://unused.invalid/never-connected")  # opens its pool on first use only
    core: list[float] = []
    layer: list[float] = []
    for round_number in range(arguments.batches):
        payloads = [{"n": n, "round": round_number} for n in range(arguments.batch)]
        started = time.process_time()
        insert_jobs_arguments([JobSpec(TASK, payload) for payload in payloads])
        core.append(time.process_time() - started)
        started = time.process_time()
        # enqueue_many's preparation, without its statement: the requests checked and turned into specs.
        specs = await client._specs_of([Enqueue(TASK, payload) for payload in payloads])
        insert_jobs_arguments(specs)
        layer.append(time.process_time() - started)
    per_job = 1e6 / arguments.batch
    core_us, layer_us = statistics.median(core) * per_job, statistics.median(layer) * per_job
    print(
        f"core {core_us:.2f} us/job, layer {layer_us:.2f} us/job: {layer_us - core_us:+.2f} us "
        f"(medians of {arguments.batches} batches of {arguments.batch})"
    )


if __name__ == "__main__":
    asyncio.run(main())
