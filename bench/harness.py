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
from bench.results import DRAIN, ENQUEUE, LATENCY_P50, LATENCY_P99, SystemResults, percentile
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
    name = system.name
    await db.clean(system)
    _say(f"{name}: enqueueing {settings.jobs:,} jobs in batches of {settings.batch:,}")
    enqueued = False
    try:
        rate = await phases.enqueue(system, settings)
        results.add(ENQUEUE, rate)
        enqueued = True
        _say(f"{name}: enqueue {rate:,.0f} jobs/s")
    except Exception as error:
        results.fail(ENQUEUE, _describe(error))
        results.fail(DRAIN, "not measured: the enqueue phase failed")
        _say(f"{name}: enqueue failed: {_describe(error).splitlines()[0]}")
    if enqueued:
        _say(f"{name}: draining")
        try:
            drained = await phases.drain(system, settings, db)
            results.add(DRAIN, drained.rate)
            if not drained.complete:
                results.drains_cut_short.append(drained.jobs)
            _say(f"{name}: drain {drained.rate:,.0f} jobs/s ({drained.jobs:,} jobs in {drained.seconds:.2f} s)")
        except Exception as error:
            results.fail(DRAIN, _describe(error))
            _say(f"{name}: drain failed: {_describe(error).splitlines()[0]}")
    await db.clean(system)
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
