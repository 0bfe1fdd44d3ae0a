"""No fault: thousands of jobs over several worker processes, serial queues and unqueued jobs, run exactly once."""

from __future__ import annotations

import random
import time
from typing import Any

import asyncpg
import pytest

from tests.chaos.harness import (
    Fleet,
    chaos_spec,
    check_ledger,
    enqueue,
    new_key,
    read_ledger,
    scaled,
    serial_overlaps,
    wait_all_done,
)

pytestmark = pytest.mark.chaos


async def test_every_job_runs_exactly_once_and_serial_queues_never_overlap(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    job_count = scaled(2000)
    queue_count = scaled(10)
    queues = [f"serial-{n}" for n in range(queue_count)]
    rng = random.Random()
    specs = []
    for n in range(job_count):
        queue = queues[n % queue_count] if n % 5 < 2 else None  # 40% in named queues
        specs.append(chaos_spec(new_key("nf"), queue=queue, sleep_ms=rng.choice([0, 0, 0, 1, 5])))
    rng.shuffle(specs)

    workers = await fleet.start(scaled(4, minimum=2), concurrency=8)
    keys = await enqueue(admin, specs)
    await wait_all_done(admin, keys, timeout=60 * max(1.0, job_count / 2000), fleet=fleet)
    codes = await fleet.stop()
    assert codes == {w.worker_id: 0 for w in workers}, codes

    report = await check_ledger(admin, "no-fault", keys, started=started)
    assert report.duplicates == 0
    assert report.runs == job_count
    ledger = await read_ledger(admin)
    overlaps = serial_overlaps(ledger)
    assert not overlaps, f"{len(overlaps)} overlapping runs in a serial queue, e.g. {overlaps[:2]}"
    by_process = {w.worker_id: sum(1 for row in ledger if row.worker_id == w.worker_id) for w in workers}
    print(f"CHAOS no-fault: runs per process {sorted(by_process.values())}, queues {queue_count}")
    assert sum(by_process.values()) == job_count
