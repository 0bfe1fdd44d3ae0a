"""A real worker process for the chaos tests: ``python -m tests.chaos.worker_process --dsn ... --worker-id ...``.

It registers the chaos tasks and runs :class:`backfill.core.Worker` with ``handle_signals=True`` until SIGTERM
(exit 0 after a graceful stop, 1 when the worker raised). Once the worker has started it writes a row to
``chaos_processes`` so the test knows it is ready, and on exit it prints ``CHAOS-SUMMARY {json}`` to stderr.

Every task writes the ledger (``chaos_ledger``, public schema) in statements of its own: a row when an attempt
starts, stamped when it ends, so a duplicate run and a half-finished run are both visible from outside.
The payload drives what an attempt does:

* ``key`` — the ledger key (also the job's ``job_key``), joining the ledger to what the test enqueued;
* ``queue`` — the named queue, recorded so serial runs can be checked for overlap;
* ``sleep_ms`` — how long the attempt works (times ``--sleep-factor``); ``slow_ms`` with ``slow_attempts`` —
  work that long instead on attempts up to ``slow_attempts``;
* ``kill_self`` — SIGKILL this process right after the start row is written;
* ``fail_times`` — the first ``fail_times`` attempts raise (outcome ``planned_failure``);
* ``fail_text`` — appended to that failure's message: text PostgreSQL cannot hold (a NUL) tests rule 8;
  ``fail_surrogate`` — append a lone surrogate too (a JSON payload cannot carry one, so it is made here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

import asyncpg
import pydantic

from backfill.core import JobContext, TaskRegistry, Worker, WorkerOptions
from backfill.core.run.signals import StopSignals
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings

logger = logging.getLogger("chaos.worker")

T = TypeVar("T")

# --sleep-factor: this process's jobs work this many times longer (a rescuer that outlasts a stale worker).
SLEEP_FACTOR = 1.0

# Idempotent by run_id (one per attempt, made here), so a retried write never records a run twice.
_START = """
    insert into public.chaos_ledger (run_id, job_key, job_id, task, attempt, max_attempts, pid, worker_id, queue_name)
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    on conflict (run_id) do nothing
"""
_FINISH = "update public.chaos_ledger set finished_at = clock_timestamp(), outcome = $2 where run_id = $1"

# The ledger is the test's instrument, not the code under test: its writes ride out a killed connection
# (pg_terminate_backend, a PostgreSQL restart) instead of failing the attempt they describe. asyncpg's pool
# raises InternalClientError ("cannot switch to state ...") when it resets a connection that died under a query.
_LEDGER_RETRY_SECONDS = 60.0
_RETRYABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)


async def _retrying(what: str, operation: Callable[[], Awaitable[T]]) -> T:
    deadline = time.monotonic() + _LEDGER_RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return await operation()
        except _RETRYABLE as error:
            if time.monotonic() > deadline:
                raise
            logger.info("ledger %s failed (%s); retrying", what, type(error).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def ledger_start(ctx: JobContext, key: str, queue: str | None) -> str:
    job = ctx.job
    run_id = uuid.uuid4().hex

    async def insert() -> None:
        await ctx.pool.execute(
            _START,
            run_id,
            key,
            job.id,
            job.task_identifier,
            job.attempts,
            job.max_attempts,
            os.getpid(),
            ctx.worker_id,
            queue,
        )

    await _retrying("start", insert)
    return run_id


async def ledger_finish(ctx: JobContext, run_id: str, outcome: str) -> None:
    async def update() -> None:
        await ctx.pool.execute(_FINISH, run_id, outcome)

    await _retrying("finish", update)


class ValidatedPayload(pydantic.BaseModel):
    key: str
    count: int


def build_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("chaos_job")
    async def chaos_job(payload: dict[str, Any], ctx: JobContext) -> None:
        key = str(payload["key"])
        run_id = await ledger_start(ctx, key, payload.get("queue"))
        if payload.get("kill_self"):
            os.kill(os.getpid(), signal.SIGKILL)
        if ctx.attempt <= int(payload.get("fail_times", 0)):
            await ledger_finish(ctx, run_id, "planned_failure")
            text = str(payload.get("fail_text", ""))
            if payload.get("fail_surrogate"):
                text += b"\xff".decode("utf-8", "surrogateescape")
            raise RuntimeError(f"planned failure {ctx.attempt} of {payload['fail_times']}{text}")
        slow = ctx.attempt <= int(payload.get("slow_attempts", 0))
        sleep_ms = float(payload.get("slow_ms", 0) if slow else payload.get("sleep_ms", 0)) * SLEEP_FACTOR
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        await ledger_finish(ctx, run_id, "ok")

    # Past its 1 s timeout the handler is cancelled and the attempt fails with a timeout error.
    @registry.task("chaos_timed", timeout=1.0)
    async def chaos_timed(payload: dict[str, Any], ctx: JobContext) -> None:
        run_id = await ledger_start(ctx, str(payload["key"]), None)
        await asyncio.sleep(float(payload.get("sleep_ms", 0)) / 1000)
        await ledger_finish(ctx, run_id, "ok")

    @registry.task("chaos_validated")
    async def chaos_validated(payload: ValidatedPayload, ctx: JobContext) -> None:
        run_id = await ledger_start(ctx, payload.key, None)
        await ledger_finish(ctx, run_id, "ok")

    # A plain def runs in a thread, which cancellation cannot stop: it stands for a handler stuck in C code.
    @registry.task("chaos_stuck")
    def chaos_stuck(payload: dict[str, Any], ctx: JobContext) -> None:
        run_id = asyncio.run(_sync_ledger_start(ctx, str(payload["key"])))
        time.sleep(float(payload["sleep_ms"]) / 1000)
        asyncio.run(_sync_ledger_finish(ctx, run_id))

    return registry


async def _sync_ledger_start(ctx: JobContext, key: str) -> str:
    # A thread cannot use the worker's pool (it belongs to the worker's loop): a connection of its own.
    connection = await asyncpg.connect(os.environ["CHAOS_DSN"])
    run_id = uuid.uuid4().hex
    try:
        job = ctx.job
        await connection.execute(
            _START,
            run_id,
            key,
            job.id,
            job.task_identifier,
            job.attempts,
            job.max_attempts,
            os.getpid(),
            ctx.worker_id,
            None,
        )
    finally:
        await connection.close()
    return run_id


async def _sync_ledger_finish(ctx: JobContext, run_id: str) -> None:
    connection = await asyncpg.connect(os.environ["CHAOS_DSN"])
    try:
        await connection.execute(_FINISH, run_id, "ok")
    finally:
        await connection.close()


def _pair(text: str) -> tuple[float, float]:
    low, high = (float(part) for part in text.split(","))
    return (low, high)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.worker_process")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", default="graphile_worker")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--grace", type=float, default=5.0, help="shutdown_grace_period")
    parser.add_argument("--lookahead", type=float)
    parser.add_argument("--local-queue-size", type=int)
    parser.add_argument("--heartbeat-interval", type=float)
    parser.add_argument("--dead-after", type=float, help="dead_worker_after")
    parser.add_argument("--sweep-interval", type=_pair, help="low,high seconds")
    parser.add_argument("--max-recoveries", type=int)
    parser.add_argument("--sleep-factor", type=float, default=1.0)
    parser.add_argument(
        "--runner-lanes",
        help="run a WorkerRunner (the backfill layer) instead of one core Worker: its custom lanes, e.g. reports=2;"
        " --concurrency is then each built-in lane's",
    )
    return parser.parse_args(argv)


def build_options(args: argparse.Namespace) -> WorkerOptions:
    settings: dict[str, Any] = {
        "schema": args.schema,
        "worker_id": args.worker_id,
        "concurrency": args.concurrency,
        "poll_interval": args.poll_interval,
        "shutdown_grace_period": args.grace,
        "handle_signals": True,
        "max_pool_size": args.concurrency + 4,
    }
    optional = {
        "lookahead": args.lookahead,
        "local_queue_size": args.local_queue_size,
        "heartbeat_interval": args.heartbeat_interval,
        "dead_worker_after": args.dead_after,
        "sweep_interval": args.sweep_interval,
        "max_recoveries": args.max_recoveries,
    }
    settings.update({name: value for name, value in optional.items() if value is not None})
    return WorkerOptions(**settings)


def build_runner(args: argparse.Namespace) -> WorkerRunner:
    """The backfill layer's runner: Fast, Bulk and ``--runner-lanes`` lanes, each a core worker of its own."""
    settings: dict[str, Any] = {
        "database_url": args.dsn,
        "schema_name": args.schema,
        "fast_queue_concurrency": args.concurrency,
        "bulk_queue_concurrency": args.concurrency,
        "lanes": args.runner_lanes,
        "poll_interval_ms": int(args.poll_interval * 1000),
        "shutdown_grace_seconds": args.grace,
        "dlq_sweep_interval_seconds": 0.5,
    }
    optional = {
        "heartbeat_interval_seconds": args.heartbeat_interval,
        "dead_worker_after_seconds": args.dead_after,
        "sweep_interval_seconds": None if args.sweep_interval is None else sum(args.sweep_interval) / 2,
        "max_recoveries": args.max_recoveries,
    }
    settings.update({name: value for name, value in optional.items() if value is not None})
    return WorkerRunner(BackfillSettings.load(env_file=None, **settings), tasks=build_registry())


async def run_runner(args: argparse.Namespace) -> int:
    runner = build_runner(args)
    await runner.start()
    try:
        connection = await asyncpg.connect(args.dsn)
        try:
            await connection.execute(
                "insert into public.chaos_processes (worker_id, pid) values ($1, $2)", args.worker_id, os.getpid()
            )
        finally:
            await connection.close()
    except BaseException:
        await runner.stop()
        raise
    stop = asyncio.Event()

    def on_signal(_signum: int) -> None:
        runner.request_stop()  # a second signal: the runner stops running jobs at once
        stop.set()

    signals = StopSignals(on_signal)
    signals.install()
    try:
        waits = [asyncio.ensure_future(worker.wait()) for worker in runner.workers.values()]
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait([*waits, stopped], return_when=asyncio.FIRST_COMPLETED)
        for pending in (*waits, stopped):
            pending.cancel()
    finally:
        summary = await runner.stop()
        signals.remove()
    print("CHAOS-SUMMARY " + json.dumps(asdict(summary)), file=sys.stderr, flush=True)
    return 0


async def main(argv: list[str]) -> int:
    global SLEEP_FACTOR  # noqa: PLW0603 - one process, one setting
    args = parse_args(argv)
    SLEEP_FACTOR = args.sleep_factor
    os.environ["CHAOS_DSN"] = args.dsn
    if args.runner_lanes is not None:
        return await run_runner(args)
    worker = Worker(args.dsn, tasks=build_registry(), options=build_options(args))
    async with worker:
        connection = await asyncpg.connect(args.dsn)
        try:
            await connection.execute(
                "insert into public.chaos_processes (worker_id, pid) values ($1, $2)", worker.worker_id, os.getpid()
            )
        finally:
            await connection.close()
        summary = await worker.wait()
    print("CHAOS-SUMMARY " + json.dumps(asdict(summary)), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    sys.exit(asyncio.run(main(sys.argv[1:])))
