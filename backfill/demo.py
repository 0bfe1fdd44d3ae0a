"""``backfill demo``: a worker processing real jobs, on an embedded PostgreSQL when DATABASE_URL is unset.

It starts a :class:`~backfill.runner.WorkerRunner` (Fast, Bulk and a custom ``reports`` lane), enqueues a mix
of jobs with :class:`~backfill.client.BackfillClient` — fast async ones, synchronous ones run in threads, a
serial queue, an emergency job, a keyed (debounced) job, one that fails once and is retried by the ``fast``
policy, and one that fails permanently and lands in the dead-letter queue — waits until the jobs table is
empty, and prints what happened lane by lane.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
import time
from collections import Counter
from typing import Any

import asyncpg

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core import JobContext, PermanentFailure, TaskRegistry
from backfill.core.extension import redact_dsn
from backfill.dlq import DeadLetterQueue
from backfill.embedded import start_embedded_postgres
from backfill.priorities import Priority
from backfill.runner.worker_runner import WorkerRunner
from backfill.settings import BackfillSettings

DEMO_TIMEOUT_SECONDS = 60.0


class StagedFailure(Exception):
    """Raised on purpose by a demo task: the worker's warning line tells the story, its traceback would not."""


class ReceiverUnavailable(StagedFailure, ConnectionError):
    pass


class NotACsvFile(StagedFailure, PermanentFailure):
    pass


class _HideStagedTracebacks(logging.Filter):
    """Drops the traceback from the worker's one-line warning about a failure the demo staged. Any other
    failure keeps its traceback: a real bug in the demo should still show where it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is not None and isinstance(record.exc_info[1], StagedFailure):
            record.exc_info = None
            record.exc_text = None
        return True


def build_demo_tasks(ran: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("demo.send_welcome_email")
    async def send_welcome_email(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.002)  # stands in for an SMTP round trip
        ran["demo.send_welcome_email"] += 1

    @registry.task("demo.page_on_call")
    async def page_on_call(payload: dict[str, Any]) -> None:
        ran["demo.page_on_call (EMERGENCY)"] += 1

    @registry.task("demo.resize_image")
    def resize_image(payload: dict[str, Any]) -> None:
        # Synchronous work runs in a thread, so the event loop keeps fetching and completing meanwhile.
        sum(i * i for i in range(20_000))
        ran["demo.resize_image"] += 1

    @registry.task("demo.monthly_report")
    async def monthly_report(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # slow work in its own lane: it never takes a Fast or Bulk slot
        ran["demo.monthly_report (reports lane)"] += 1

    @registry.task("demo.customer_sync")
    async def customer_sync(payload: dict[str, Any], ctx: JobContext) -> None:
        # Jobs in one serial queue run one at a time, in order, across every worker.
        ran["demo.customer_sync (serial queue)"] += 1

    @registry.task("demo.flaky_webhook")
    async def flaky_webhook(payload: dict[str, Any], ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise ReceiverUnavailable("receiver answered 503")  # retried by the `fast` policy after ~0.1 s
        ran["demo.flaky_webhook (after retry)"] += 1

    @registry.task("demo.import_file")
    async def import_file(payload: dict[str, Any]) -> None:
        raise NotACsvFile(f"{payload['path']}: not a CSV file")  # straight to the dead-letter queue

    return registry


async def run_demo(*, jobs: int = 200) -> int:
    staged = _HideStagedTracebacks()
    worker_logger = logging.getLogger("backfill.worker")  # where the worker reports failed attempts
    worker_logger.addFilter(staged)
    try:
        dsn = os.environ.get("DATABASE_URL")
        if dsn:
            print(f"database: {redact_dsn(dsn)}")
            return await _demo(dsn, jobs, embedded=False)
        print("DATABASE_URL is not set: starting an embedded PostgreSQL, deleted when the demo ends")
        with start_embedded_postgres(prefix="backfill-demo-pg-") as server:
            print(f"database: {redact_dsn(server.dsn)}")
            return await _demo(server.dsn, jobs, embedded=True)
    finally:
        worker_logger.removeFilter(staged)


def closing_hint(*, embedded: bool) -> list[str]:
    """What to try next: a command that works now, against the database the demo just used."""
    dlq_list = f"{shlex.quote(_python_command())} -m backfill dlq list"
    lines = ["(the webhook failed its first attempt on purpose and was retried ~0.1 s later by the `fast` policy;"]
    if not embedded:
        lines.append(f" the import failed permanently on purpose and waits in the dead-letter queue: `{dlq_list}`)")
        return lines
    lines.append(" the import failed permanently on purpose and went to the dead-letter queue.)")
    lines.append("The embedded PostgreSQL is gone with its data. To triage the dead-letter queue yourself, run the")
    lines.append(f"demo on a server of yours: `DATABASE_URL=postgresql://... {_python_command()} -m backfill demo`,")
    lines.append(f"then `{dlq_list}`.")
    return lines


def _python_command() -> str:
    """This interpreter as the user can type it: relative to the working directory when below it (the
    README's ``.venv/bin/python``), so the hint runs as printed."""
    relative = os.path.relpath(sys.executable)
    return relative if not relative.startswith("..") else sys.executable


async def _demo(dsn: str, jobs: int, *, embedded: bool) -> int:
    ran: Counter[str] = Counter()
    settings = BackfillSettings.load(
        env_file=None,
        database_url=dsn,
        fast_queue_concurrency=4,
        bulk_queue_concurrency=4,
        lanes="reports=1",
        dlq_sweep_interval_seconds=0.5,
    )
    runner = WorkerRunner(settings, tasks=build_demo_tasks(ran))
    started = time.monotonic()
    async with runner:
        print(f"runner started: lanes {', '.join(f'{lane.name}={lane.concurrency}' for lane in runner.lanes)}")
        client = BackfillClient(runner.pool)
        requests = [
            Enqueue("demo.send_welcome_email", {"user_id": n}, priority=Priority.FAST_DEFAULT) for n in range(jobs // 2)
        ]
        requests += [Enqueue("demo.resize_image", {"image_id": n}) for n in range(jobs // 4)]
        requests += [Enqueue("demo.monthly_report", {"month": m}, lane="reports") for m in range(1, 4)]
        requests += [Enqueue("demo.customer_sync", {"step": n}, queue="customer:42") for n in range(10)]
        await client.enqueue_many(requests)
        await client.enqueue_critical("demo.page_on_call", {"incident": 7})
        await client.enqueue("demo.flaky_webhook", {"url": "https://example.invalid/hook"}, retry_policy="fast")
        doomed = await client.enqueue_bulk("demo.import_file", {"path": "upload.xlsx"})
        # Enqueued twice under one key, a second ahead: the second replaces the first (debounce), so it runs once.
        for version in (1, 2):
            await client.enqueue_fast(
                "demo.send_welcome_email", {"user_id": "vip", "v": version}, job_key="welcome:vip", delay=1.0
            )
        total = len(requests) + 4
        print(f"enqueued {total} jobs (one keyed job was enqueued twice and debounced)")
        remaining, dead = await _wait_until_settled(runner.pool, started, doomed.id)
        entries = [
            entry for entry in (await DeadLetterQueue(runner.pool).list(limit=5)).entries if entry.job_id == doomed.id
        ]
    elapsed = time.monotonic() - started
    print(f"\nfinished in {elapsed:.1f}s:")
    for name, count in sorted(ran.items()):
        print(f"  {name:<40} {count:>5}")
    for lane, worker in runner.workers.items():
        print(f"  lane {lane:<8} succeeded={worker.summary.succeeded} failed attempts={worker.summary.failed}")
    for entry in entries:
        print(f"  dead-letter queue: #{entry.id} {entry.task_identifier} ({entry.reason}): {entry.last_error}")
    for line in closing_hint(embedded=embedded):
        print(line)
    summary = runner.summary
    return 0 if remaining == 0 and dead and summary.succeeded == total - 1 else 1


async def _wait_until_settled(pool: asyncpg.Pool[Any], started: float, doomed_id: int) -> tuple[int, bool]:
    """Wait until the jobs table is empty and the failed import reached the dead-letter queue."""
    last_report = 0.0
    while True:
        # Only the demo's own jobs: the database may hold other work the demo's tasks cannot run.
        remaining = int(
            await pool.fetchval(
                "select count(*) from graphile_worker._private_jobs as j"
                " join graphile_worker._private_tasks as t on t.id = j.task_id where t.identifier like 'demo.%'"
            )
        )
        dead = bool(
            await pool.fetchval(
                "select exists (select 1 from graphile_worker.backfill_dlq where job_id = $1)", doomed_id
            )
        )
        now = time.monotonic()
        if (remaining == 0 and dead) or now - started > DEMO_TIMEOUT_SECONDS:
            return remaining, dead
        if now - last_report >= 1.0:
            print(f"  {now - started:4.1f}s: {remaining} job(s) waiting")
            last_report = now
        await asyncio.sleep(0.1)
