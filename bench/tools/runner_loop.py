"""CPU per job of the runner loop alone, no database: the core's fast path against the same with the layer's
observers (metrics and the success log) listening. What the layer costs per job, without the noise of a drain.

    .venv/bin/python -m bench.tools.runner_loop [--jobs 50000] [--rounds 7]

The local queue is filled by hand with no-op jobs carrying a retry-policy flag (as the layer's jobs do); the
completer only queues results (it is never started). Rounds alternate core and layer; the minimum of each is
printed, since on a shared machine noise only ever adds time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from datetime import UTC, datetime

from backfill.core import Events, Job, TaskRegistry
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.metrics import BackfillMetrics
from backfill.runner.success_log import log_successes
from tests.support.slots import slots_over

FLAGS = frozenset({"backfill:retry=default"})


async def microseconds_per_job(jobs: int, *, layer: bool) -> float:
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(payload: dict[str, int]) -> None:
        return None

    now = datetime.now(UTC)
    queued = [
        Job(i, "noop", {"i": i}, None, 5, now, 1, 25, None, now, now, None, now, "w", 0, FLAGS) for i in range(jobs)
    ]
    events, summary = Events(), RunSummary()
    slots = slots_over(registry, queued, options=WorkerOptions(concurrency=24), events=events, summary=summary)
    if layer:
        BackfillMetrics(tasks=["noop"]).observe_worker(events, "bulk", busy_slots=lambda: slots.running, slots=24)
        log_successes(events, level="info", sample_rate=1.0)  # filtered by level, as in a quiet runner
    before = time.process_time()
    slots.start()
    await asyncio.gather(*slots.tasks)
    await asyncio.sleep(0)  # the last attempts:batch
    spent = time.process_time() - before
    slots.close()
    if summary.succeeded != jobs:
        raise RuntimeError(f"ran {summary.succeeded} of {jobs} jobs")
    return spent / jobs * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    core: list[float] = []
    layer: list[float] = []
    for _ in range(arguments.rounds):
        core.append(await microseconds_per_job(arguments.jobs, layer=False))
        layer.append(await microseconds_per_job(arguments.jobs, layer=True))
    print(
        f"core {min(core):.2f} us/job, with the layer's observers {min(layer):.2f} us/job: "
        f"{min(layer) - min(core):+.2f} us (min of {arguments.rounds} rounds of {arguments.jobs} jobs)"
    )


if __name__ == "__main__":
    asyncio.run(main())
