"""Runs every measurement for every system, one system at a time, ``repeat`` times over.

Repetitions go round the systems (backfill, node, … then again) rather than finishing one system first,
so that a change in background load during the run is spread over all systems instead of landing on one.
A system that fails is reported with its error; the others carry on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from bench import phases
from bench.database import BenchDatabase
from bench.phases import Settings
from bench.process import DriverError, DriverProcess
from bench.protocol import RESULT
from bench.results import (
    BACKLOG_DRAIN,
    BACKLOG_RSS,
    CPU_PER_1000,
    DRAIN,
    ENQUEUE,
    FAST_IDLE_P50,
    FAST_IDLE_P99,
    FAST_LOADED_P50,
    FAST_LOADED_P99,
    IDLE_DB_CPU,
    IDLE_WORKER_CPU,
    LATENCY_P50,
    LATENCY_P99,
    SINGLE_ENQUEUE,
    SystemResults,
    percentile,
)
from bench.systems import System, make_system


def _say(message: str) -> None:
    # Progress goes to stderr so that stdout carries only the report.
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, DriverError):
        return str(error)
    return f"{type(error).__name__}: {error}"


async def _setup(name: str, settings: Settings, db: BenchDatabase, results: SystemResults) -> System | None:
    try:
        system = make_system(name)
        await db.recreate_schema(system)
        driver = await DriverProcess.start(name, system.argv("migrate", settings.dsn), system.env())
        try:
            await driver.expect(RESULT, phases.START_TIMEOUT)
            await driver.wait(phases.STOP_TIMEOUT)
        finally:
            await driver.close()
    except Exception as error:  # whatever it is, this system is out and the others go on
        results.fail("setup", _describe(error))
        _say(f"{name}: cannot be set up: {_describe(error).splitlines()[0]}")
        return None
    return system


async def _measure_once(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    await _enqueue_and_drain(system, settings, db, results)
    if system.measures(SINGLE_ENQUEUE):
        await _single_enqueue(system, settings, db, results)
    if system.measures(LATENCY_P50):
        await _latency(system, settings, db, results)
    if system.measures(FAST_IDLE_P50) and settings.fast_jobs:
        await _fast_lane(system, settings, db, results)
    if system.measures(IDLE_DB_CPU) and settings.idle_backlog:
        await _idle_cost(system, settings, db, results)
    if system.measures(BACKLOG_DRAIN) and settings.backlog_jobs:
        await _backlog_drain(system, settings, db, results)


async def _enqueue_and_drain(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    name = system.name
    await db.clean(system)
    if system.measures(ENQUEUE):
        _say(f"{name}: enqueueing {settings.jobs:,} jobs in batches of {settings.batch:,}")
        try:
            rate = await phases.enqueue(system, settings)
        except Exception as error:
            results.fail(ENQUEUE, _describe(error))
            results.fail(DRAIN, "not measured: the enqueue phase failed")
            _say(f"{name}: enqueue failed: {_describe(error).splitlines()[0]}")
            await db.clean(system)
            return
        results.add(ENQUEUE, rate)
        _say(f"{name}: enqueue {rate:,.0f} jobs/s")
    else:
        await db.insert_backlog(system, settings.jobs)  # a system with no enqueue API of its own
    _say(f"{name}: draining")
    try:
        drained = await phases.drain(system, settings, db, jobs=settings.jobs, limit=settings.drain_limit)
        results.add(DRAIN, drained.rate)
        if not drained.complete:
            results.drains_cut_short.append(drained.jobs)
        cpu = drained.cpu_ms_per_1000_jobs if system.measures(CPU_PER_1000) else None
        if cpu is not None:
            results.add(CPU_PER_1000, cpu)
        _say(
            f"{name}: drain {drained.rate:,.0f} jobs/s ({drained.jobs:,} jobs in {drained.seconds:.2f} s)"
            + (f", worker CPU {cpu:.1f} ms per 1,000 jobs" if cpu is not None else "")
        )
    except Exception as error:
        results.fail(DRAIN, _describe(error))
        results.fail(CPU_PER_1000, "not measured: the drain failed")
        _say(f"{name}: drain failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)


async def _single_enqueue(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    _say(f"{system.name}: {settings.single_jobs:,} single enqueues, each awaited")
    try:
        rate = await phases.single_enqueue(system, settings)
        results.add(SINGLE_ENQUEUE, rate)
        _say(f"{system.name}: single enqueue {rate:,.0f} jobs/s")
    except Exception as error:
        results.fail(SINGLE_ENQUEUE, _describe(error))
        _say(f"{system.name}: single enqueue failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)


async def _latency(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    name = system.name
    _say(f"{name}: latency over {settings.latency_jobs:,} jobs, {settings.gap_ms:g} ms apart")
    try:
        samples = await phases.latency(system, settings)
        p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
        results.add(LATENCY_P50, p50)
        results.add(LATENCY_P99, p99)
        results.latency_samples_ms.append(samples)
        _say(f"{name}: latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    except Exception as error:
        results.fail(LATENCY_P50, _describe(error))
        results.fail(LATENCY_P99, _describe(error))
        _say(f"{name}: latency failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)


async def _fast_lane(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    name = system.name
    conditions = (
        ("idle", 0, FAST_IDLE_P50, FAST_IDLE_P99),
        ("under_bulk", settings.lane_bulk_jobs, FAST_LOADED_P50, FAST_LOADED_P99),
    )
    for condition, bulk_jobs, p50_key, p99_key in conditions:
        what = f"over a Bulk backlog of {bulk_jobs:,} jobs" if bulk_jobs else "with Bulk idle"
        _say(f"{name}: Fast-lane pickup of {settings.fast_jobs:,} jobs {settings.gap_ms:g} ms apart, {what}")
        try:
            measured = await phases.fast_lane(system, settings, db, bulk_jobs=bulk_jobs)
            p50, p99 = percentile(measured.latencies_ms, 0.50), percentile(measured.latencies_ms, 0.99)
            results.add(p50_key, p50)
            results.add(p99_key, p99)
            results.fast_lane_samples_ms.setdefault(condition, []).append(measured.latencies_ms)
            if bulk_jobs and measured.bulk_left == 0:
                results.remark(p50_key, "the Bulk backlog ran out before the last Fast job: raise --lane-bulk-jobs")
            left = f", {measured.bulk_left:,} Bulk jobs left" if bulk_jobs else ""
            _say(f"{name}: Fast-lane p50 {p50:.2f} ms, p99 {p99:.2f} ms{left}")
        except Exception as error:
            results.fail(p50_key, _describe(error))
            results.fail(p99_key, _describe(error))
            _say(f"{name}: Fast-lane pickup failed: {_describe(error).splitlines()[0]}")
        await db.clean(system)


async def _idle_cost(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    name = system.name
    _say(f"{name}: idle for {settings.idle_seconds:g} s over {settings.idle_backlog:,} jobs due in an hour")
    try:
        cost = await phases.idle_cost(system, settings, db)
        results.add(IDLE_DB_CPU, cost.database_percent)
        results.add(IDLE_WORKER_CPU, cost.worker_percent)
        _say(
            f"{name}: idle PostgreSQL CPU {cost.database_percent:.2f}% of a core over {cost.backends} backends, "
            f"worker process {cost.worker_percent:.2f}%"
        )
    except Exception as error:
        results.fail(IDLE_DB_CPU, _describe(error))
        results.fail(IDLE_WORKER_CPU, _describe(error))
        _say(f"{name}: idle cost failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)


async def _backlog_drain(system: System, settings: Settings, db: BenchDatabase, results: SystemResults) -> None:
    name = system.name
    jobs = settings.backlog_jobs
    # The same slowest acceptable rate as the ordinary drain's limit.
    limit = settings.drain_limit * max(1.0, jobs / settings.jobs)
    _say(f"{name}: draining a backlog of {jobs:,} jobs (stopped after {limit:.0f} s)")
    try:
        await db.insert_backlog(system, jobs)
        drained = await phases.drain(system, settings, db, jobs=jobs, limit=limit)
        results.add(BACKLOG_DRAIN, drained.rate)
        if drained.peak_rss_kib is not None:
            results.add(BACKLOG_RSS, drained.peak_rss_kib / 1024)
        if not drained.complete:
            results.remark(
                BACKLOG_DRAIN, f"the backlog drain hit its {limit:.0f} s limit; the rate is over the jobs done"
            )
        rss = f", peak RSS {drained.peak_rss_kib / 1024:,.0f} MiB" if drained.peak_rss_kib is not None else ""
        _say(f"{name}: backlog drain {drained.rate:,.0f} jobs/s ({drained.jobs:,} in {drained.seconds:.1f} s){rss}")
    except Exception as error:
        results.fail(BACKLOG_DRAIN, _describe(error))
        results.fail(BACKLOG_RSS, _describe(error))
        _say(f"{name}: backlog drain failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)


async def run(names: Sequence[str], settings: Settings, repeat: int) -> dict[str, SystemResults]:
    results = {name: SystemResults(name) for name in names}
    db = await BenchDatabase.connect(settings.dsn)
    systems: list[System] = []
    try:
        for name in names:
            system = await _setup(name, settings, db, results[name])
            if system is not None:
                systems.append(system)
        for round_number in range(1, repeat + 1):
            if repeat > 1:
                _say(f"round {round_number} of {repeat}")
            for system in systems:
                try:
                    await _measure_once(system, settings, db, results[system.name])
                except Exception as error:  # e.g. its tables could not be cleaned: skip it, keep the others
                    results[system.name].fail("run", _describe(error))
                    _say(f"{system.name}: failed: {_describe(error).splitlines()[0]}")
    finally:
        for system in systems:
            await db.drop_schema(system)
        await db.close()
    return results
