"""The backfill layer under SIGKILL: runner processes (a core worker per lane on one pool, the DLQ mover,
metrics) killed mid-run lose no job, in any lane, and jobs that fail for good reach the dead-letter queue."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import asyncpg
import pytest

from tests.chaos.harness import (
    JOBS,
    Fleet,
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

RUNNER: dict[str, Any] = {
    "runner_lanes": "reports=2",
    "concurrency": 3,
    "poll_interval": 0.5,
    "heartbeat_interval": 0.5,
    "dead_after": 2.0,
    "sweep_interval": (0.5, 1.0),
}
LANE_FLAGS = ["backfill:lane", "backfill:lane=reports"]


async def test_sigkilled_runners_lose_no_job_in_any_lane(fleet: Fleet, admin: asyncpg.Connection[Any]) -> None:
    started = time.monotonic()
    count = scaled(450)
    runners = await fleet.start(3, **RUNNER)
    specs = []
    for n in range(count):
        lane = n % 3  # fast, bulk, reports
        spec = chaos_spec(new_key(f"lane{lane}"), sleep_ms=random.randint(20, 150), priority=-5 if lane == 0 else 5)
        if lane == 2:
            spec = type(spec)(spec.identifier, spec.payload, job_key=spec.job_key, flags=LANE_FLAGS)
        specs.append(spec)
    # Jobs that can never succeed: two attempts, then the dead-letter queue (whichever runner fails them last).
    doomed = [chaos_spec(new_key("doomed"), fail_times=99, max_attempts=2, priority=-1) for _ in range(5)]
    keys = await enqueue(admin, specs)
    doomed_keys = await enqueue(admin, doomed)

    victim = random.choice(runners)
    await asyncio.sleep(random.uniform(0.5, 1.5))  # mid-run: every lane has jobs running
    victim.kill()
    await victim.wait(10)
    # What the victim held when it died may run again (the duplicate a crash excuses): jobs still running, and
    # jobs whose handler had finished but whose result was not written yet. Its lanes' worker ids are the
    # ones its ledger rows name.
    ledger = await read_ledger(admin)
    victim_workers = {r.worker_id for r in ledger if r.pid == victim.pid}
    held: set[str] = set()
    for worker_id in victim_workers:
        held |= await jobs_locked_by(admin, worker_id)
    running = {r.job_key for r in ledger if r.pid == victim.pid and not r.finished_at}
    excused = held | running

    await wait_all_done(admin, keys | doomed_keys, timeout=90, fleet=fleet)
    await wait_for(
        lambda: admin.fetchval(
            "select count(*) = $2 from graphile_worker.backfill_dlq where job_key = any($1)", list(doomed_keys), 5
        ),
        timeout=30,
        message="every doomed job in the dead-letter queue",
    )
    survivors = [r for r in runners if r is not victim]
    codes = await fleet.stop()
    assert codes == {r.worker_id: 0 for r in survivors}, codes

    report = await check_ledger(admin, "runner-sigkill", keys, faults=1, excused=excused, started=started)
    ledger = await read_ledger(admin)
    lanes_run = {row.job_key.split("-")[0] for row in ledger if row.finished_at and row.job_key in keys}
    assert lanes_run == {"lane0", "lane1", "lane2"}
    entries = await admin.fetch(
        "select job_key, attempts, jsonb_array_length(errors) as errors from graphile_worker.backfill_dlq"
        " where job_key = any($1)",
        list(doomed_keys),
    )
    assert {(e["attempts"], e["errors"]) for e in entries} == {(2, 2)}
    assert await admin.fetchval(f"select count(*) from {JOBS} where key = any($1)", list(doomed_keys)) == 0
    print(
        f"CHAOS runner-sigkill: 3 runners x 3 lanes, {len(keys)} jobs + 5 doomed, 1 runner killed holding"
        f" {len(held)} jobs ({len(running)} running), duplicates {report.duplicates}, all 5 doomed in the DLQ"
        " with 2 errors each"
    )
    assert report.duplicates <= len(excused)
