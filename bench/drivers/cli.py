"""The command line every Python driver shares: migrate, enqueue-bulk, enqueue-serial and work.

The timing that happens inside a driver (bulk enqueueing, and the start of each job) is done here, once
for all Python systems, so that they are measured the same way; ``bench/node/driver.mjs`` mirrors it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from bench.drivers.base import Driver
from bench.protocol import READY, RESULT, STARTED, emit, now_ms


class Recorder:
    """Counts jobs and, for payloads stamped with ``t`` (epoch ms at enqueue), their start latency."""

    def __init__(self, expect: int, stop: asyncio.Event) -> None:
        self.expect = expect
        self.stop = stop
        self.count = 0
        self.latencies_ms: list[float] = []

    def record(self, payload: Mapping[str, Any]) -> None:
        started = now_ms()  # read the clock before anything else the handler does
        self.count += 1
        stamp = payload.get("t")
        if isinstance(stamp, (int, float)):
            self.latencies_ms.append(started - stamp)
        if self.expect and self.count >= self.expect:
            self.stop.set()


async def enqueue_bulk(driver: Driver, jobs: int, batch: int) -> None:
    async with driver.client() as client:
        started = time.perf_counter()
        for first in range(0, jobs, batch):
            await client.add_batch([{"n": n} for n in range(first, min(first + batch, jobs))])
        emit(RESULT, seconds=time.perf_counter() - started)


async def enqueue_serial(driver: Driver, jobs: int, gap_ms: float) -> None:
    async with driver.client() as client:
        for n in range(jobs):
            await client.add_one({"n": n, "t": now_ms()})
            await asyncio.sleep(gap_ms / 1000)
        emit(RESULT)


async def work(driver: Driver, concurrency: int, expect: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    recorder = Recorder(expect, stop)
    # "ready" is sent before the worker starts: its own start-up (pool, schema check, LISTEN) is timed.
    emit(READY, at_ms=now_ms())
    await driver.work(concurrency, recorder.record, stop, lambda: emit(STARTED, at_ms=now_ms()))
    emit(RESULT, count=recorder.count, latencies_ms=recorder.latencies_ms)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="benchmark driver (spoken to by bench.harness)")
    parser.add_argument("command", choices=["migrate", "enqueue-bulk", "enqueue-serial", "work"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--expect", type=int, default=0)
    return parser


async def _run(driver_class: type[Driver], args: argparse.Namespace) -> None:
    driver = driver_class(args.dsn, args.schema)
    if args.command == "migrate":
        await driver.migrate()
        emit(RESULT)
    elif args.command == "enqueue-bulk":
        await enqueue_bulk(driver, args.jobs, args.batch)
    elif args.command == "enqueue-serial":
        await enqueue_serial(driver, args.jobs, args.gap_ms)
    else:
        await work(driver, args.concurrency, args.expect)


def main(driver_class: type[Driver], argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_run(driver_class, args))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
