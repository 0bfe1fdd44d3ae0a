"""SIGTERM during long jobs: graceful exit 0 within the grace period, nothing lost, nothing left locked."""

from __future__ import annotations

import signal
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
    new_key,
    read_ledger,
    scaled,
    wait_all_done,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos

GRACE = 2.0
# Process exit after the grace period: cancelling, recording results, closing the pool, interpreter exit.
EXIT_MARGIN = 8.0


async def test_sigterm_finishes_what_fits_returns_what_does_not_and_exits_0(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    concurrency = 2
    # A large lookahead with a small local queue: once the quick warm-up jobs have shown a high throughput,
    # the worker claims a local queue's worth of the slow jobs ahead of its free slots. Those are the
    # "claimed but never started" jobs a graceful stop must hand back with their attempt refunded.
    (worker,) = await fleet.start(
        1, concurrency=concurrency, grace=GRACE, lookahead=1000, local_queue_size=6, poll_interval=0.5
    )
    warm_up = [chaos_spec(new_key("warm"), priority=-10) for _ in range(40)]
    fits = chaos_spec(new_key("fits"), sleep_ms=1500)  # started before SIGTERM, done within the grace period
    # Too long for the grace period on their first attempt; quick on any later one.
    long = chaos_spec(new_key("long"), slow_attempts=1, slow_ms=60_000)
    # After fits and long (priority), quick: a fresh worker finishes them at once.
    queued = [chaos_spec(new_key("queued"), sleep_ms=100, priority=1) for _ in range(scaled(8))]
    keys = await enqueue(admin, [*warm_up, fits, long, *queued])
    running_keys = {str(fits.job_key), str(long.job_key)}

    async def both_running_and_some_queued() -> tuple[int, int] | None:
        started_keys = {r.job_key for r in await read_ledger(admin)}
        locked = await admin.fetchval(f"select count(*) from {JOBS} where locked_by = $1", worker.worker_id)
        if running_keys <= started_keys and locked > len(running_keys):
            return (len(started_keys), int(locked))
        return None

    await wait_for(both_running_and_some_queued, timeout=20, message="fits+long running and others claimed")
    held = {
        str(r["key"]) for r in await admin.fetch(f"select key from {JOBS} where locked_by = $1", worker.worker_id)
    } - running_keys
    t0 = time.monotonic()
    worker.send(signal.SIGTERM)
    code = await worker.wait(GRACE + EXIT_MARGIN + 10)
    exit_seconds = time.monotonic() - t0
    assert code == 0, worker.stderr()[-3000:]
    assert exit_seconds < GRACE + EXIT_MARGIN, f"took {exit_seconds:.1f}s to exit (grace {GRACE}s)"
    summary = worker.summary()
    assert summary is not None

    ledger = await read_ledger(admin)
    fits_runs = [r for r in ledger if r.job_key == fits.job_key]
    assert [r.outcome for r in fits_runs] == ["ok"], fits_runs
    assert await admin.fetchval(f"select count(*) from {JOBS} where key = $1", fits.job_key) == 0

    # The interrupted job is back in the queue, unlocked, with its attempt counted (options.py: a job that
    # never fits the grace period cannot cycle forever) and the reason in last_error.
    long_row = await admin.fetchrow(f"select * from {JOBS} where key = $1", long.job_key)
    assert long_row is not None
    assert long_row["locked_by"] is None and long_row["attempts"] == 1, dict(long_row)
    assert "nterrupted" in (long_row["last_error"] or ""), dict(long_row)

    # Claimed but never started: returned, attempt refunded, untouched otherwise.
    ran = {r.job_key for r in ledger}
    returned = held - ran
    assert returned, "no claimed-but-unstarted job to return (the local queue stayed empty)"
    rows = await admin.fetch(
        f"select key, attempts, locked_by, last_error from {JOBS} where key = any($1)", list(returned)
    )
    assert len(rows) == len(returned)
    assert all(r["attempts"] == 0 and r["locked_by"] is None and r["last_error"] is None for r in rows), rows
    assert summary["returned"] == len(returned), (summary, len(returned))
    assert summary["interrupted"] == 1, summary

    # A fresh worker finishes everything.
    fresh = await fleet.start(1, concurrency=concurrency, grace=GRACE)
    await wait_all_done(admin, keys, timeout=30, fleet=fleet)
    codes = await fleet.stop(fresh)
    assert codes == {fresh[0].worker_id: 0}
    report = await check_ledger(admin, "sigterm", keys, faults=1, excused={str(long.job_key)}, started=started)
    print(
        f"CHAOS sigterm: exit {exit_seconds:.2f}s after SIGTERM (grace {GRACE}s), "
        f"returned {len(returned)}, interrupted 1, finished in grace 1"
    )
    assert report.duplicates == 1  # the interrupted job, run again
