"""Priorities, a custom lane and serial queues, side by side in one worker pass.

* **Priority** orders the jobs of one lane: lower runs first.
* **Lanes** split capacity: the Fast lane (priority < 0) and the Bulk lane (priority >= 0) each have their own
  slots, and a custom lane (here ``reports``, one slot) runs only the jobs enqueued into it.
* A **serial queue** (here one per customer) runs its jobs one at a time, in order, across every worker.

Run it with ``DATABASE_URL`` set: ``python -m examples.priorities_and_lanes``. See
docs/how-to/lanes-and-queues.md for when to use which.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

import backfill
from backfill import Priority
from backfill.lanes.lane import lane_of
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings


@dataclass
class Run:
    task: str
    label: str
    lane: str
    start: float
    end: float = 0.0


RUNS: list[Run] = []


async def record(ctx: backfill.JobContext, label: str, seconds: float) -> None:
    job = ctx.job
    # The lane is derived from the job itself (its priority and flags), the same way the workers split the jobs.
    task = job.task_identifier.removeprefix("lanes.")
    run = Run(task, label, lane_of(job.priority, job.flags), time.monotonic())
    RUNS.append(run)
    await asyncio.sleep(seconds)  # stands in for real work
    run.end = time.monotonic()


@backfill.task("lanes.import_file")
async def import_file(payload: dict[str, str], ctx: backfill.JobContext) -> None:
    await record(ctx, payload["file"], 0.02)


# Reports are heavy: they get a lane of their own (sized by BACKFILL_LANES) so that they can neither fill the
# Bulk lane's slots nor be held up by them. Every job of this task goes there unless the caller says otherwise.
@backfill.task("lanes.monthly_report", lane="reports")
async def monthly_report(payload: dict[str, str], ctx: backfill.JobContext) -> None:
    await record(ctx, payload["month"], 0.05)


@backfill.task("lanes.sync_customer", priority=Priority.FAST_DEFAULT)
async def sync_customer(payload: dict[str, int], ctx: backfill.JobContext) -> None:
    await record(ctx, f"customer {payload['customer']} step {payload['step']}", 0.03)


async def main() -> int:
    # The lanes a worker runs come from its settings: here BACKFILL_LANES="reports=1" and two Bulk slots,
    # given as overrides so that the example needs nothing but DATABASE_URL.
    settings = BackfillSettings.load(lanes="reports=1", bulk_queue_concurrency=2)
    async with backfill.BackfillClient.from_env() as client:
        await client.migrate()  # everything the client and the runner use, before the first enqueue
        # Enqueued least urgent first: the Bulk lane still starts them most urgent first.
        for priority in (Priority.BULK_LOWEST, Priority.BULK_LOW, Priority.BULK_DEFAULT):
            await client.enqueue("lanes.import_file", {"file": f"{priority.name.lower()}.csv"}, priority=priority)
        # Urgent, but in the reports lane: its single slot runs them one after another, and the Fast lane's
        # free slots never take them.
        for month in ("2025-01", "2025-02", "2025-03"):
            await client.enqueue("lanes.monthly_report", {"month": month}, priority=Priority.EMERGENCY)
        # One serial queue per customer: a customer's steps never overlap and run in order, while different
        # customers run side by side in the Fast lane.
        for step in (1, 2, 3):
            for customer in (42, 7):
                await client.enqueue(
                    "lanes.sync_customer", {"customer": customer, "step": step}, queue=f"customer:{customer}"
                )

    summary = await WorkerRunner(settings).run_once()

    t0 = min(run.start for run in RUNS)
    for run in sorted(RUNS, key=lambda r: r.start):
        print(f"{run.start - t0:6.3f}s-{run.end - t0:6.3f}s  {run.lane:<7} {run.task:<14} {run.label}")
    print(f"worker pass: succeeded={summary.succeeded} failed={summary.failed}")

    imports = [run.label for run in sorted(RUNS, key=lambda r: r.start) if run.task == "import_file"]
    checks = {
        "bulk jobs started most urgent first": imports == ["bulk_default.csv", "bulk_low.csv", "bulk_lowest.csv"],
        "reports ran one at a time": not overlapping([r for r in RUNS if r.task == "monthly_report"]),
        "each customer's steps ran in order, one at a time": all(
            in_order_and_alone([r for r in RUNS if r.label.startswith(f"customer {c} ")]) for c in (42, 7)
        ),
    }
    for claim, held in checks.items():
        print(f"{'ok' if held else 'NOT TRUE'}: {claim}")
    return 0 if summary.succeeded == 12 and all(checks.values()) else 1


def overlapping(runs: list[Run]) -> bool:
    ordered = sorted(runs, key=lambda r: r.start)
    return any(later.start < earlier.end for earlier, later in itertools.pairwise(ordered))


def in_order_and_alone(runs: list[Run]) -> bool:
    ordered = sorted(runs, key=lambda r: r.start)
    return not overlapping(ordered) and [r.label for r in ordered] == sorted(r.label for r in ordered)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
