"""``backfill demo``: a worker processing real jobs, on an embedded PostgreSQL when DATABASE_URL is unset.

It enqueues a mix of jobs — fast async ones, synchronous ones run in threads, a serial queue, a keyed
(debounced) job and one that fails once and is retried with Graphile's backoff — runs a worker until the
jobs table is empty, and prints what happened.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections import Counter
from typing import Any

import asyncpg

from backfill.core.context import JobContext
from backfill.core.db import redact_dsn
from backfill.core.enqueue import add_job, add_jobs
from backfill.core.errors import ConfigurationError
from backfill.core.jobs import JobSpec
from backfill.core.migrate import migrate
from backfill.core.options import WorkerOptions
from backfill.core.tasks import TaskRegistry
from backfill.core.worker import Worker

DEMO_TIMEOUT_SECONDS = 60.0


def build_demo_tasks(ran: Counter[str]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("demo.send_welcome_email")
    async def send_welcome_email(payload: dict[str, Any]) -> None:
        await asyncio.sleep(0.002)  # stands in for an SMTP round trip
        ran["demo.send_welcome_email"] += 1

    @registry.task("demo.resize_image")
    def resize_image(payload: dict[str, Any]) -> None:
        # Synchronous work runs in a thread, so the event loop keeps fetching and completing meanwhile.
        sum(i * i for i in range(20_000))
        ran["demo.resize_image"] += 1

    @registry.task("demo.customer_sync")
    async def customer_sync(payload: dict[str, Any], ctx: JobContext) -> None:
        # Jobs in one named queue run one at a time, in order, across every worker.
        ran["demo.customer_sync"] += 1

    @registry.task("demo.flaky_webhook")
    async def flaky_webhook(payload: dict[str, Any], ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("receiver answered 503")  # retried after e^1 ≈ 2.7 s
        ran["demo.flaky_webhook (after retry)"] += 1

    return registry


async def run_demo(*, jobs: int = 200) -> int:
    dsn = os.environ.get("DATABASE_URL")
    server: Any = None
    if not dsn:
        server, dsn = _start_embedded_postgres()
    print(f"database: {redact_dsn(dsn)}")
    try:
        return await _demo(dsn, jobs)
    finally:
        if server is not None:
            server.cleanup()


def _start_embedded_postgres() -> tuple[Any, str]:
    try:
        import pgserver
    except ImportError as error:
        raise ConfigurationError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'backfill[embedded]' or set DATABASE_URL"
        ) from error
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its INFO lines drown the demo's output
    data_dir = tempfile.mkdtemp(prefix="backfill-demo-pg-")
    print(f"DATABASE_URL is not set: starting an embedded PostgreSQL in {data_dir}")
    server = pgserver.get_server(data_dir, cleanup_mode="delete")  # type: ignore[attr-defined]
    return server, str(server.get_uri())


async def _demo(dsn: str, jobs: int) -> int:
    ran: Counter[str] = Counter()
    registry = build_demo_tasks(ran)
    async with asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
        report = await migrate(pool)
        print(f"schema {report.schema} at revision {report.to_revision}")
        specs = [JobSpec("demo.send_welcome_email", {"user_id": n}, priority=-5) for n in range(jobs // 2)]
        specs += [JobSpec("demo.resize_image", {"image_id": n}) for n in range(jobs // 4)]
        specs += [JobSpec("demo.customer_sync", {"step": n}, queue_name="customer:42") for n in range(10)]
        await add_jobs(pool, specs)
        await add_job(pool, "demo.flaky_webhook", {"url": "https://example.invalid/hook"})
        # Enqueued twice under one key: the second replaces the first (debounce), so it runs once.
        for version in (1, 2):
            await add_job(pool, "demo.send_welcome_email", {"user_id": "vip", "v": version}, job_key="welcome:vip")
        total = len(specs) + 2
        print(f"enqueued {total} jobs (one keyed job was enqueued twice and debounced)")

        started = time.monotonic()
        worker = Worker(pool, tasks=registry, options=WorkerOptions(concurrency=8, poll_interval=0.5))
        async with worker:
            remaining = await _wait_until_empty(pool, started)
        elapsed = time.monotonic() - started
    print(f"\nworker {worker.worker_id} finished in {elapsed:.1f}s:")
    for name, count in sorted(ran.items()):
        print(f"  {name:<40} {count:>5}")
    summary = worker.summary
    print(f"  succeeded={summary.succeeded} failed attempts={summary.failed} (retried) left in table={remaining}")
    print("(the webhook failed its first attempt on purpose — that is the traceback logged above — and was")
    print(" retried after Graphile's backoff of e^1 ≈ 2.7 s)")
    return 0 if remaining == 0 and summary.succeeded == total else 1


async def _wait_until_empty(pool: asyncpg.Pool[Any], started: float) -> int:
    last_report = 0.0
    while True:
        remaining = int(await pool.fetchval("select count(*) from graphile_worker._private_jobs"))
        now = time.monotonic()
        if remaining == 0 or now - started > DEMO_TIMEOUT_SECONDS:
            return remaining
        if now - last_report >= 1.0:
            print(f"  {now - started:4.1f}s: {remaining} job(s) waiting")
            last_report = now
        await asyncio.sleep(0.1)
