"""The three measurements, each run against one system through its driver.

* enqueue — the driver times its own loop of bulk calls (connection set up beforehand);
* drain — from the worker's ``ready`` timestamp (sent just before it starts its worker) until the harness
  sees no job left; a system too slow to finish within the time limit is stopped there and measured over
  the jobs it did;
* latency — a worker idles on LISTEN/NOTIFY while a second process enqueues jobs one at a time, each
  stamped with the wall-clock time just before its enqueue call; the handler subtracts that stamp from
  the time it starts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.database import BenchDatabase
from bench.process import DriverProcess
from bench.protocol import READY, RESULT, STARTED, now_ms
from bench.systems import System

# How often the harness looks for remaining jobs while a worker drains: the resolution of the drain time.
DRAIN_PROBE_INTERVAL = 0.02
# Time for a worker to finish its start-up (LISTEN included) before the latency enqueuer begins.
LATENCY_SETTLE_SECONDS = 1.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


@dataclass(frozen=True)
class Settings:
    dsn: str
    jobs: int
    batch: int
    latency_jobs: int
    gap_ms: float
    concurrency: int
    drain_limit: float  # seconds


@dataclass(frozen=True)
class Drain:
    seconds: float
    jobs: int  # jobs drained: all of them unless the time limit stopped the worker
    complete: bool

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


async def enqueue(system: System, settings: Settings) -> float:
    """Jobs per second enqueued through the system's bulk API."""
    driver = await DriverProcess.start(
        system.name,
        system.argv("enqueue-bulk", settings.dsn, jobs=settings.jobs, batch=settings.batch),
        system.env(),
    )
    try:
        result = await driver.expect(RESULT, START_TIMEOUT + settings.jobs / 100)
        await driver.wait(STOP_TIMEOUT)
    finally:
        await driver.close()
    return settings.jobs / float(result["seconds"])


async def drain(system: System, settings: Settings, db: BenchDatabase) -> Drain:
    """Run a worker over the ``settings.jobs`` jobs already queued until none is left."""
    await db.vacuum(system)
    driver = await DriverProcess.start(
        system.name, system.argv("work", settings.dsn, concurrency=settings.concurrency), system.env()
    )
    try:
        started_ms = float((await driver.expect(READY, START_TIMEOUT))["at_ms"])
        while await db.any_pending(system):
            if not driver.running:
                raise driver.error("worker exited while jobs were left")
            if now_ms() - started_ms > settings.drain_limit * 1000:
                driver.signal()  # stop working before counting, so the count matches the time
                left = await db.count_pending(system)
                return Drain((now_ms() - started_ms) / 1000, settings.jobs - left, complete=False)
            await asyncio.sleep(DRAIN_PROBE_INTERVAL)
        finished_ms = now_ms()
        driver.signal()
        await driver.expect(RESULT, STOP_TIMEOUT, skipping={STARTED})
        return Drain((finished_ms - started_ms) / 1000, settings.jobs, complete=True)
    finally:
        await driver.close()


async def latency(system: System, settings: Settings) -> list[float]:
    """Schedule-to-start latencies (ms) of ``settings.latency_jobs`` jobs enqueued one at a time."""
    count = settings.latency_jobs
    worker = await DriverProcess.start(
        system.name,
        system.argv("work", settings.dsn, concurrency=settings.concurrency, expect=count),
        system.env(),
    )
    enqueuer: DriverProcess | None = None
    try:
        await worker.expect(READY, START_TIMEOUT)
        await worker.expect(STARTED, START_TIMEOUT)
        await asyncio.sleep(LATENCY_SETTLE_SECONDS)
        enqueuer = await DriverProcess.start(
            f"{system.name} enqueuer",
            system.argv("enqueue-serial", settings.dsn, jobs=count, gap_ms=settings.gap_ms),
            system.env(),
        )
        # Generous: a busy machine stretches each gap, and a slow system adds its own time.
        await enqueuer.expect(RESULT, START_TIMEOUT + count * (settings.gap_ms / 1000 + 0.05))
        await enqueuer.wait(STOP_TIMEOUT)
        result = await worker.expect(RESULT, STOP_TIMEOUT)
    finally:
        for process in (enqueuer, worker):
            if process is not None:
                await process.close()
    latencies = [float(value) for value in result["latencies_ms"]]
    if len(latencies) != count:
        raise worker.error(f"ran {len(latencies)} of the {count} latency jobs")
    return latencies
