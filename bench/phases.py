"""The measurements, each run against one system through its driver.

* enqueue — the driver times its own loop of bulk calls (connection set up beforehand);
* single enqueue — the driver times its own loop of awaited single-job calls, back to back;
* drain — from the worker's ``ready`` timestamp (sent just before it starts its worker) until the harness
  sees no job left; a system too slow to finish within the time limit is stopped there and measured over
  the jobs it did. The worker reports its own CPU time over the same span, and its peak RSS;
* latency — a worker idles on LISTEN/NOTIFY while a second process enqueues jobs one at a time, each
  stamped with the wall-clock time just before its enqueue call; the handler subtracts that stamp from
  the time it starts;
* Fast-lane pickup — the latency measurement for Fast-lane jobs, once with the Bulk lane idle and once
  while it drains a backlog;
* idle cost — a worker idles over a backlog scheduled an hour ahead; the harness reads the CPU time of its
  PostgreSQL backends (and of the worker process) from /proc over a fixed window.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench import cpu
from bench.database import BenchDatabase, with_application_name
from bench.process import DriverError, DriverProcess
from bench.protocol import READY, RESULT, STARTED, now_ms
from bench.systems import System

# How often the harness looks for remaining jobs while a worker drains: the resolution of the drain time.
DRAIN_PROBE_INTERVAL = 0.02
# Time for a worker to finish its start-up (LISTEN included) before the latency enqueuer begins.
LATENCY_SETTLE_SECONDS = 1.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# Time for an idle worker to finish its start-up work (first fetch over the backlog, registration, cron and
# sweeper first passes) before the idle window opens: the window is about the steady state.
IDLE_SETTLE_SECONDS = 3.0
# How far ahead the idle backlog is scheduled: beyond any window, as in issue #11 ("an hour ahead").
IDLE_BACKLOG_DUE_IN_SECONDS = 3600.0


@dataclass(frozen=True)
class Settings:
    dsn: str
    jobs: int
    batch: int
    latency_jobs: int
    gap_ms: float
    concurrency: int
    drain_limit: float  # seconds
    single_jobs: int = 5_000
    fast_jobs: int = 300  # Fast-lane jobs per pickup measurement (0: skip the phase)
    lane_bulk_jobs: int = 300_000  # the Bulk backlog the loaded Fast-lane measurement runs over
    idle_backlog: int = 1_000_000  # jobs scheduled ahead for the idle-cost measurement (0: skip it)
    idle_seconds: float = 20.0
    backlog_jobs: int = 0  # the large-backlog drain (0: skip it)


@dataclass(frozen=True)
class Drain:
    seconds: float
    jobs: int  # jobs drained: all of them unless the time limit stopped the worker
    complete: bool
    cpu_seconds: float | None = None  # the worker's user+sys CPU from ready to the stop signal
    peak_rss_kib: int | None = None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def cpu_ms_per_1000_jobs(self) -> float | None:
        if self.cpu_seconds is None or self.jobs == 0:
            return None
        return self.cpu_seconds * 1000 / (self.jobs / 1000)


@dataclass(frozen=True)
class FastLane:
    latencies_ms: list[float]
    bulk_left: int  # Bulk jobs still waiting when the last Fast job started: 0 means Bulk ran dry


@dataclass(frozen=True)
class IdleCost:
    database_percent: float  # the worker's PostgreSQL backends, % of one core
    worker_percent: float  # the worker process itself
    backends: int


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


async def single_enqueue(system: System, settings: Settings) -> float:
    """Jobs per second enqueued one awaited single-job call at a time."""
    driver = await DriverProcess.start(
        system.name, system.argv("enqueue-single", settings.dsn, jobs=settings.single_jobs), system.env()
    )
    try:
        result = await driver.expect(RESULT, START_TIMEOUT + settings.single_jobs / 50)
        await driver.wait(STOP_TIMEOUT)
    finally:
        await driver.close()
    return settings.single_jobs / float(result["seconds"])


async def drain(system: System, settings: Settings, db: BenchDatabase, *, jobs: int, limit: float) -> Drain:
    """Run a worker over the ``jobs`` jobs already queued until none is left, or for ``limit`` seconds."""
    await db.vacuum(system)
    driver = await DriverProcess.start(
        system.name, system.argv("work", settings.dsn, concurrency=settings.concurrency), system.env()
    )
    try:
        started_ms = float((await driver.expect(READY, START_TIMEOUT))["at_ms"])
        complete = True
        while await db.any_pending(system):
            if not driver.running:
                raise driver.error("worker exited while jobs were left")
            if now_ms() - started_ms > limit * 1000:
                complete = False
                break
            await asyncio.sleep(DRAIN_PROBE_INTERVAL)
        finished_ms = now_ms()
        driver.signal()  # stop working before counting, so the count matches the time
        done = jobs if complete else jobs - await db.count_pending(system)
        try:
            result = await driver.expect(RESULT, STOP_TIMEOUT, skipping={STARTED})
        except DriverError:
            if complete:
                raise
            result = {}  # a worker stopped mid-backlog may not shut down in time: its rate still counts
        cpu_seconds = result.get("cpu_s")
        peak_rss = result.get("peak_rss_kib")
        return Drain(
            (finished_ms - started_ms) / 1000,
            done,
            complete,
            cpu_seconds=float(cpu_seconds) if cpu_seconds is not None else None,
            peak_rss_kib=int(peak_rss) if peak_rss is not None else None,
        )
    finally:
        await driver.close()


async def latency(system: System, settings: Settings) -> list[float]:
    """Schedule-to-start latencies (ms) of ``settings.latency_jobs`` jobs enqueued one at a time."""
    return await _pickup(system, settings, count=settings.latency_jobs, fast=False, busy=False)


async def fast_lane(system: System, settings: Settings, db: BenchDatabase, *, bulk_jobs: int) -> FastLane:
    """Schedule-to-start latencies (ms) of ``settings.fast_jobs`` Fast-lane jobs enqueued one at a time,
    while the same worker process drains a Bulk backlog of ``bulk_jobs`` no-op jobs (0: Bulk idle)."""
    if bulk_jobs:
        await db.insert_backlog(system, bulk_jobs)
        await db.vacuum(system)
    latencies = await _pickup(system, settings, count=settings.fast_jobs, fast=True, busy=bulk_jobs > 0)
    # The worker stopped once the last Fast job started: what is left now is Bulk work it had not reached.
    return FastLane(latencies, await db.count_pending(system))


async def _pickup(system: System, settings: Settings, *, count: int, fast: bool, busy: bool) -> list[float]:
    worker = await DriverProcess.start(
        system.name,
        system.argv("work", settings.dsn, concurrency=settings.concurrency, expect=count, lanes=int(fast)),
        system.env(),
    )
    enqueuer: DriverProcess | None = None
    try:
        await worker.expect(READY, START_TIMEOUT)
        await worker.expect(STARTED, START_TIMEOUT)
        if not busy:
            await asyncio.sleep(LATENCY_SETTLE_SECONDS)
        # A busy worker is measured at once: every second of settling would be a second of backlog gone.
        enqueuer = await DriverProcess.start(
            f"{system.name} enqueuer",
            system.argv("enqueue-serial", settings.dsn, jobs=count, gap_ms=settings.gap_ms, fast=int(fast)),
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


async def idle_cost(system: System, settings: Settings, db: BenchDatabase) -> IdleCost:
    """CPU spent while a worker idles over ``settings.idle_backlog`` jobs due in an hour."""
    await db.insert_backlog(system, settings.idle_backlog, due_in_seconds=IDLE_BACKLOG_DUE_IN_SECONDS)
    await db.vacuum(system)
    # Backends named after the system, so that other sessions on a shared server are not counted.
    application_name = f"bench-idle-{system.name}"
    dsn = with_application_name(settings.dsn, application_name)
    worker = await DriverProcess.start(
        system.name, system.argv("work", dsn, concurrency=settings.concurrency), system.env()
    )
    try:
        await worker.expect(READY, START_TIMEOUT)
        await worker.expect(STARTED, START_TIMEOUT)
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        backends_before = cpu.snapshot(await db.backend_pids(application_name))
        if not backends_before:
            raise worker.error(f"no PostgreSQL backend is named {application_name!r}")
        worker_before = cpu.snapshot([worker.pid])
        opened = time.monotonic()
        await asyncio.sleep(settings.idle_seconds)  # the window itself: nothing to wait for but time
        backends_after = cpu.snapshot(await db.backend_pids(application_name))
        worker_after = cpu.snapshot([worker.pid])
        seconds = time.monotonic() - opened
        if not worker.running:
            raise worker.error("the worker exited during the idle window")
    finally:
        await worker.close()
    return IdleCost(
        cpu.percent_of_a_core(backends_before, backends_after, seconds),
        cpu.percent_of_a_core(worker_before, worker_after, seconds),
        len(backends_after),
    )
