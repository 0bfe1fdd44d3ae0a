"""The command line every Python driver shares: migrate, enqueue-bulk, enqueue-single, enqueue-serial and work.

The timing that happens inside a driver (bulk and single enqueueing, the start of each job, the worker's
own CPU time) is done here, once for all Python systems, so that they are measured the same way;
``bench/node/driver.mjs`` mirrors it.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from bench.drivers.base import Driver, FastLaneClient
from bench.protocol import READY, RESULT, STARTED, emit, now_ms


class Recorder:
    """Counts jobs and, for payloads stamped with ``t`` (epoch ms at enqueue), their start latency.

    ``expect`` counts stamped jobs only: in the Fast-lane phase the worker also runs a Bulk backlog of
    unstamped jobs, and stops once every stamped (Fast) job has started, whatever is left of the Bulk.
    """

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
            if self.expect and len(self.latencies_ms) >= self.expect:
                self.stop.set()


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (every thread of it)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


async def enqueue_bulk(driver: Driver, jobs: int, batch: int) -> None:
    async with driver.client() as client:
        started = time.perf_counter()
        for first in range(0, jobs, batch):
            await client.add_batch([{"n": n} for n in range(first, min(first + batch, jobs))])
        emit(RESULT, seconds=time.perf_counter() - started)


async def enqueue_single(driver: Driver, jobs: int) -> None:
    """``jobs`` awaited single-job enqueues back to back: the cost of one call, round trip included."""
    async with driver.client() as client:
        started = time.perf_counter()
        for n in range(jobs):
            await client.add_one({"n": n})
        emit(RESULT, seconds=time.perf_counter() - started)


async def enqueue_serial(driver: Driver, jobs: int, gap_ms: float, fast: bool) -> None:
    async with driver.client() as client:
        if fast and not isinstance(client, FastLaneClient):
            raise SystemExit("this system has no fast lane")
        add = client.add_fast if isinstance(client, FastLaneClient) and fast else client.add_one
        for n in range(jobs):
            await add({"n": n, "t": now_ms()})
            await asyncio.sleep(gap_ms / 1000)
        emit(RESULT)


async def work(driver: Driver, concurrency: int, expect: int) -> None:
    stop = asyncio.Event()
    cpu_at_stop: list[float] = []

    def stop_on_signal() -> None:
        # The drain's clock stops when the harness sees no job left and signals; shutdown is not timed,
        # so its CPU is not counted either.
        if not cpu_at_stop:
            cpu_at_stop.append(cpu_seconds())
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_on_signal)
    recorder = Recorder(expect, stop)
    cpu_at_ready = cpu_seconds()
    # "ready" is sent before the worker starts: its own start-up (pool, schema check, LISTEN) is timed.
    emit(READY, at_ms=now_ms())
    await driver.work(concurrency, recorder.record, stop, lambda: emit(STARTED, at_ms=now_ms()))
    cpu_at_end = cpu_at_stop[0] if cpu_at_stop else cpu_seconds()
    emit(
        RESULT,
        count=recorder.count,
        latencies_ms=recorder.latencies_ms,
        cpu_s=cpu_at_end - cpu_at_ready,
        peak_rss_kib=peak_rss_kib(),
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="benchmark driver (spoken to by bench.harness)")
    parser.add_argument("command", choices=["migrate", "enqueue-bulk", "enqueue-single", "enqueue-serial", "work"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--fast", type=int, default=0, help="1: enqueue-serial puts its jobs in the fast lane")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--expect", type=int, default=0)
    # The Node driver's switch to two runners (fast, bulk); a backfill runner always has its lanes.
    parser.add_argument("--lanes", type=int, default=0)
    return parser


async def _run(driver_class: type[Driver], args: argparse.Namespace) -> None:
    driver = driver_class(args.dsn, args.schema)
    if args.command == "migrate":
        await driver.migrate()
        emit(RESULT)
    elif args.command == "enqueue-bulk":
        await enqueue_bulk(driver, args.jobs, args.batch)
    elif args.command == "enqueue-single":
        await enqueue_single(driver, args.jobs)
    elif args.command == "enqueue-serial":
        await enqueue_serial(driver, args.jobs, args.gap_ms, bool(args.fast))
    else:
        await work(driver, args.concurrency, args.expect)


def main(driver_class: type[Driver], argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_run(driver_class, args))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
