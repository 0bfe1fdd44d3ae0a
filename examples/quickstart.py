"""The shortest complete tour: two tasks, a fast and a bulk job, one pass of a worker.

Run it with ``DATABASE_URL`` set: ``python -m examples.quickstart``. docs/quickstart.md walks through it.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

import backfill
from backfill.client.default import close_default_client
from backfill.runner import WorkerRunner


class Welcome(BaseModel):
    """The payload is validated before the handler runs; a bad one fails the job for good, naming the field."""

    to: str
    name: str


# Every job of this task goes to the Fast lane (a negative priority) and retries quickly, unless the caller
# who enqueues it says otherwise.
@backfill.task("quickstart.send_welcome", priority=backfill.Priority.FAST_DEFAULT, retry_policy="fast")
async def send_welcome(payload: Welcome, ctx: backfill.JobContext) -> None:
    print(f"job {ctx.job.id}: welcome email to {payload.name} <{payload.to}> (attempt {ctx.attempt})")


# A plain `def` runs in a thread, so slow or blocking work does not stall the worker's event loop.
@backfill.task("quickstart.rebuild_report", timeout=60)
def rebuild_report(payload: dict[str, int]) -> None:
    print(f"rebuilt the report for {payload['year']}")


async def main() -> int:
    # Install or upgrade Graphile's schema and all of backfill's tables, the task catalog the client reads
    # included (idempotent). A deployment does this once per release with `backfill migrate`; a runner also
    # does it when it starts, but here the enqueueing comes first.
    async with backfill.BackfillClient(os.environ["DATABASE_URL"]) as client:
        await client.migrate()

    # The module-level functions share one client, built from DATABASE_URL on first use.
    welcome = await backfill.enqueue("quickstart.send_welcome", {"to": "ada@example.com", "name": "Ada"})
    urgent = await backfill.enqueue_fast("quickstart.send_welcome", {"to": "alan@example.com", "name": "Alan"})
    report = await backfill.enqueue_bulk("quickstart.rebuild_report", {"year": 2025})
    for job in (welcome, urgent, report):
        print(f"enqueued job {job.id}: {job.task_identifier} at priority {job.priority}")
    await close_default_client()

    # One pass of every lane: run what is runnable now, then return. A deployment runs
    # `WorkerRunner.from_env().run()` (or `backfill run`) instead, which keeps going until SIGTERM.
    summary = await WorkerRunner.from_env().run_once()
    print(f"worker pass: succeeded={summary.succeeded} failed={summary.failed}")
    return 0 if summary.succeeded == 3 and summary.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
