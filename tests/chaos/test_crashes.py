"""Workers that die: SIGKILL mid-job, a stale worker that comes back, and a job that kills every worker.

These need backfill's crash recovery (heartbeats into ``backfill_workers`` and a sweeper that rescues a dead
worker's jobs): short settings here so a dead worker is noticed in about two seconds.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import asyncpg
import pytest

from tests.chaos.harness import (
    JOBS,
    Fleet,
    WorkerProcess,
    chaos_spec,
    check_ledger,
    enqueue,
    jobs_locked_by,
    new_key,
    read_ledger,
    scaled,
    wait_all_done,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos

DEAD_AFTER = 2.0
SWEEP = (0.5, 1.0)
RECOVERY: dict[str, Any] = {"heartbeat_interval": 0.5, "dead_after": DEAD_AFTER, "sweep_interval": SWEEP}
# dead_after + one sweep interval, plus room for a loaded 2-core machine.
RECOVERY_BOUND = DEAD_AFTER + SWEEP[1] + 6.0


async def test_sigkilled_workers_lose_nothing_and_their_jobs_are_rescued_in_seconds(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    job_count = scaled(800)
    kills = scaled(2)
    workers = await fleet.start(kills + 2, concurrency=4, poll_interval=0.5, **RECOVERY)
    specs = [chaos_spec(new_key("kill"), sleep_ms=random.randint(20, 200)) for _ in range(job_count)]
    keys = await enqueue(admin, specs)

    victims = random.sample(workers, kills)
    excused: set[str] = set()
    running_at_kill: set[str] = set()
    recoveries: list[asyncio.Task[tuple[float, float]]] = []

    async def recovered(victim: WorkerProcess, held: set[str], killed_at: float) -> tuple[float, float]:
        """Seconds from the kill until the victim's jobs were released, and until they had all run again."""
        own = await asyncpg.connect(fleet.dsn)  # runs beside the test's other queries: a connection of its own

        async def released() -> bool:
            return bool(await own.fetchval(f"select count(*) from {JOBS} where locked_by = $1", victim.worker_id) == 0)

        async def done() -> bool:
            left = await own.fetchval(f"select count(*) from {JOBS} where key = any($1)", list(held))
            return bool(left == 0)

        try:
            await wait_for(released, timeout=RECOVERY_BOUND + 30, interval=0.05, message="the victim's jobs released")
            released_after = time.monotonic() - killed_at
            await wait_for(done, timeout=RECOVERY_BOUND + 30, interval=0.05, message="the killed worker's jobs re-run")
        finally:
            await own.close()
        return released_after, time.monotonic() - killed_at

    for victim in victims:
        await asyncio.sleep(random.uniform(0.3, 1.5))  # a random moment mid-run, chosen by the test
        victim.kill()
        killed_at = time.monotonic()
        await victim.wait(10)
        held = await jobs_locked_by(admin, victim.worker_id)
        unfinished = {
            r.job_key for r in await read_ledger(admin) if r.worker_id == victim.worker_id and not r.finished_at
        }
        excused |= held
        running_at_kill |= unfinished & held
        if held:
            recoveries.append(asyncio.create_task(recovered(victim, held, killed_at)))

    recovery_pairs = await asyncio.gather(*recoveries)
    recovery_times = [done for _released, done in recovery_pairs]
    await wait_all_done(admin, keys, timeout=60 * max(1.0, job_count / 800), fleet=fleet)
    survivors = [w for w in workers if w not in victims]
    assert all(w.alive for w in survivors)
    codes = await fleet.stop()
    assert codes == {w.worker_id: 0 for w in survivors}, codes

    report = await check_ledger(
        admin,
        "sigkill",
        keys,
        faults=kills,
        excused=excused,
        started=started,
        recovery_seconds=max(recovery_times, default=None),
    )
    print(
        f"CHAOS sigkill: {kills} workers killed, {len(excused)} jobs held by them ({len(running_at_kill)} running),"
        f" released after {[round(r, 2) for r, _ in recovery_pairs]}s, all re-run after"
        f" {[round(t, 2) for t in recovery_times]}s, duplicates {report.duplicates}"
    )
    assert report.duplicates <= len(running_at_kill) + len(excused)
    assert all(t < RECOVERY_BOUND for t in recovery_times), recovery_times


async def test_a_stale_worker_that_comes_back_changes_nothing_for_its_rescued_jobs(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    count = 2
    (stale,) = await fleet.start(1, concurrency=count, poll_interval=0.5, **RECOVERY)
    # Its jobs outlast the time it is stopped, so they end right after SIGCONT, while the rescuer's runs
    # (three times as long) are still going: the late results meet rows the rescuer holds.
    keys = await enqueue(admin, [chaos_spec(new_key("stale"), sleep_ms=2000) for _ in range(count)])

    async def runs_by(worker: WorkerProcess, *, finished: bool = False) -> set[str] | None:
        rows = await read_ledger(admin)
        found = {r.job_key for r in rows if r.worker_id == worker.worker_id and (r.finished_at or not finished)}
        return found if found >= keys else None

    await wait_for(lambda: runs_by(stale), timeout=10, message="the stale worker running its jobs")
    stale.send(signal.SIGSTOP)
    stopped_at = time.monotonic()
    (rescuer,) = await fleet.start(1, concurrency=count, poll_interval=0.5, sleep_factor=3, **RECOVERY)
    await wait_for(lambda: runs_by(rescuer), timeout=RECOVERY_BOUND + 10, message="the rescuer running the jobs")
    rescued_after = time.monotonic() - stopped_at

    stale.send(signal.SIGCONT)
    # The stale worker's handlers finish now (their sleep ran out while it was stopped) and it tries to
    # record them: fenced, so the rows stay as the rescuer holds them.
    await wait_for(lambda: runs_by(stale, finished=True), timeout=15, message="the stale worker's late finishes")

    async def stale_results_attempted() -> bool:
        return "lost the lease" in stale.stderr() or "lost_lease" in stale.stderr()

    await wait_for(stale_results_attempted, timeout=10, message="the stale worker's results fenced out")
    rows = await admin.fetch(f"select key, locked_by, attempts, last_error from {JOBS} where key = any($1)", list(keys))
    assert len(rows) == count, f"the stale worker's late completion removed rescued jobs: {rows}"
    assert all(r["locked_by"] == rescuer.worker_id and r["last_error"] is None for r in rows), rows

    await wait_all_done(admin, keys, timeout=20, fleet=fleet)
    codes = await fleet.stop()
    assert codes[rescuer.worker_id] == 0, codes
    summary = stale.summary()
    report = await check_ledger(
        admin, "stale-worker", keys, faults=1, excused=keys, started=started, recovery_seconds=rescued_after
    )
    ledger = await read_ledger(admin)
    for key in keys:
        runs = [r for r in ledger if r.job_key == key]
        assert {r.worker_id for r in runs} == {stale.worker_id, rescuer.worker_id}, runs
    print(
        f"CHAOS stale-worker: rescued {rescued_after:.2f}s after SIGSTOP;"
        f" stale worker exit {codes.get(stale.worker_id)}, its summary {summary}"
    )
    assert report.duplicates == count  # each job ran in both, and only the rescuer's result counted
    assert summary is not None and summary["lost_leases"] >= count, summary


async def _poison_pill_run(
    fleet: Fleet, admin: asyncpg.Connection[Any], name: str, worker_options: dict[str, Any]
) -> tuple[asyncpg.Record, set[str], set[str], int, float]:
    """Enqueue a job that SIGKILLs its worker, plus innocent ones, restarting every worker that dies, until the
    poison job is failed for good; then wait for the innocent jobs."""
    started = time.monotonic()
    options: dict[str, Any] = {"poll_interval": 0.5, "max_recoveries": MAX_RECOVERIES, **RECOVERY, **worker_options}
    await fleet.start(2, **options)
    poison = chaos_spec(new_key("poison"), kill_self=True)
    others = [chaos_spec(new_key("ok"), sleep_ms=random.randint(10, 50)) for _ in range(scaled(50))]
    keys = await enqueue(admin, [poison, *others])
    excused: set[str] = set()
    deaths = 0

    async def poison_failed() -> asyncpg.Record | None:
        nonlocal deaths
        for worker in list(fleet.processes):
            if not worker.alive and worker.exit_code is None:
                worker.exit_code = await worker.wait(5)
                deaths += 1
                excused.update(await jobs_locked_by(admin, worker.worker_id))
                await fleet.start(1, ready=False, **options)  # the test restarts whatever died
        row: asyncpg.Record | None = await admin.fetchrow(f"select * from {JOBS} where key = $1", poison.job_key)
        if row is not None and row["attempts"] == row["max_attempts"] and row["locked_by"] is None:
            return row
        return None

    row = await wait_for(poison_failed, timeout=(MAX_RECOVERIES + 2) * (RECOVERY_BOUND + 5), message="poison pill")
    print(f"CHAOS {name}: poison failed after {time.monotonic() - started:.2f}s, {deaths} worker deaths")
    innocent = [str(s.job_key) for s in others]
    collateral = await admin.fetch(
        f"select key, attempts, last_error from {JOBS} where key = any($1) and last_error ilike '%poison%'", innocent
    )
    assert not collateral, f"innocent jobs failed as poison pills: {[dict(r) for r in collateral]}"
    await wait_all_done(admin, innocent, timeout=30, fleet=fleet)
    await fleet.wait_ready([w for w in fleet.processes if w.alive])
    codes = await fleet.stop()
    assert all(code == 0 for code in codes.values()), codes
    await check_ledger(
        admin, name, keys, faults=deaths, excused=excused, expect_failed={str(poison.job_key)}, started=started
    )
    return row, keys, excused, deaths, started


MAX_RECOVERIES = 2


async def test_a_job_that_kills_every_worker_is_failed_as_a_poison_pill(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    # One job at a time per worker (no lookahead): the poison pill never has company when it strikes.
    row, _keys, _excused, deaths, _ = await _poison_pill_run(
        fleet, admin, "poison-pill", {"concurrency": 1, "lookahead": 0}
    )
    error = str(row["last_error"])
    assert "poison" in error.lower(), error
    assert f"max_recoveries={MAX_RECOVERIES}" in error, error
    poison_runs = [r for r in await read_ledger(admin) if r.job_key == row["key"]]
    print(f"CHAOS poison-pill: poison ran {len(poison_runs)} times; last_error: {error!r}")
    assert deaths == len(poison_runs)
    assert MAX_RECOVERIES <= len(poison_runs) <= MAX_RECOVERIES + 1


async def test_jobs_running_beside_a_poison_pill_are_not_failed_with_it(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    await _poison_pill_run(fleet, admin, "poison-pill-company", {"concurrency": 2})
