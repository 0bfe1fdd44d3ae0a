"""Smaller promises from docs/reliability.md, each with a real worker process: transactional enqueue with
random rollbacks, payloads that fail validation, unknown tasks, and handler timeouts (including a handler that
ignores cancellation)."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import asyncpg
import pytest

from backfill.core import JobSpec, add_job
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


async def test_rolled_back_enqueues_never_run_and_committed_ones_all_do(
    fleet: Fleet, admin: asyncpg.Connection[Any], chaos_db: str
) -> None:
    started = time.monotonic()
    await fleet.start(1, concurrency=4, poll_interval=0.2)
    committed: set[str] = set()
    rolled_back: set[str] = set()
    rng = random.Random()

    # One transaction held open across the others: no worker may see its job before it commits.
    held = await asyncpg.connect(chaos_db)
    held_tx = held.transaction()
    await held_tx.start()
    held_key = new_key("held")
    await add_job(held, "chaos_job", {"key": held_key}, job_key=held_key)

    for _ in range(scaled(150)):
        keys = [new_key("tx") for _ in range(rng.randint(1, 3))]
        commit = rng.random() < 0.5
        try:
            async with admin.transaction():
                for key in keys:
                    await add_job(admin, "chaos_job", {"key": key, "sleep_ms": rng.choice([0, 2])}, job_key=key)
                if not commit:
                    raise _Rollback
        except _Rollback:
            rolled_back.update(keys)
        else:
            committed.update(keys)

    await wait_all_done(admin, committed, timeout=30, fleet=fleet)
    assert held_key not in {r.job_key for r in await read_ledger(admin)}, "a job ran before its enqueue committed"
    await held_tx.commit()
    await held.close()
    committed.add(held_key)
    await wait_all_done(admin, committed, timeout=15, fleet=fleet)
    codes = await fleet.stop()
    assert set(codes.values()) == {0}, codes

    ran = {r.job_key for r in await read_ledger(admin)}
    assert not ran & rolled_back, f"rolled-back jobs ran: {ran & rolled_back}"
    assert await admin.fetchval(f"select count(*) from {JOBS} where key = any($1)", list(rolled_back)) == 0
    report = await check_ledger(admin, "transactional-enqueue", committed, started=started)
    print(f"CHAOS transactional-enqueue: {len(committed)} committed, {len(rolled_back)} rolled back, none of them ran")
    assert report.duplicates == 0


class _Rollback(Exception):
    pass


async def test_a_payload_that_fails_validation_fails_naming_the_field_and_keeps_its_data(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    await fleet.start(1, concurrency=2)
    bad_key = new_key("invalid")
    bad_payload = {"key": bad_key, "count": "not a number"}
    good = [JobSpec("chaos_validated", {"key": k, "count": 1}, job_key=k) for k in (new_key("valid") for _ in range(5))]
    bad = JobSpec("chaos_validated", bad_payload, job_key=bad_key, max_attempts=2)
    keys = await enqueue(admin, [bad, *good])

    async def bad_failed_for_good() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await admin.fetchrow(
            f"select attempts, max_attempts, last_error, locked_by, payload::text as payload from {JOBS}"
            " where key = $1",
            bad_key,
        )
        # Its retry comes e^1 s after the first failure (Graphile's backoff).
        return row if row is not None and row["attempts"] == 2 and row["locked_by"] is None else None

    row = await wait_for(bad_failed_for_good, timeout=20, message="the invalid job's attempts used up")
    await wait_all_done(admin, keys - {bad_key}, timeout=10, fleet=fleet)
    codes = await fleet.stop()
    assert set(codes.values()) == {0}, codes

    assert "count" in row["last_error"], row["last_error"]
    assert json.loads(row["payload"]) == bad_payload  # the data is kept for whoever fixes it
    await check_ledger(admin, "invalid-payload", keys, faults=1, expect_failed={bad_key}, started=started)
    print(f"CHAOS invalid-payload: last_error {row['last_error']!r}")


async def test_a_job_for_a_task_no_worker_has_stays_waiting_untouched(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    await fleet.start(2, concurrency=2, poll_interval=0.2)
    unknown_key = new_key("unknown")
    unknown = JobSpec("chaos_nobody_runs_this", {"key": unknown_key}, job_key=unknown_key)
    others = [chaos_spec(new_key("known")) for _ in range(scaled(20))]
    keys = await enqueue(admin, [unknown, *others])
    await wait_all_done(admin, keys - {unknown_key}, timeout=15, fleet=fleet)
    # Several polls later (0.2 s each) it is still untouched: no worker claims what it cannot run.
    polls = await admin.fetchval("select clock_timestamp()")

    async def polled_since() -> bool:
        return bool(await admin.fetchval("select clock_timestamp() - $1 > interval '1 second'", polls))

    await wait_for(polled_since, timeout=5)
    codes = await fleet.stop()
    assert set(codes.values()) == {0}, codes
    await check_ledger(admin, "unknown-task", keys, expect_waiting={unknown_key}, started=started)


async def test_handlers_past_their_timeout_fail_with_a_timeout_error_and_a_stuck_one_frees_its_slot(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    # One slot: the quick jobs can only run if the stuck handler's slot is given up.
    (worker,) = await fleet.start(1, concurrency=1, poll_interval=0.2)
    stuck_key = new_key("stuck")
    stuck = JobSpec(
        "chaos_stuck", {"key": stuck_key, "sleep_ms": 8000}, job_key=stuck_key, max_attempts=1, timeout=0.5, priority=-2
    )
    timed = chaos_spec(new_key("timed"), task="chaos_timed", sleep_ms=10_000, max_attempts=2, priority=-1)
    quick = [chaos_spec(new_key("quick")) for _ in range(scaled(10))]
    keys = await enqueue(admin, [stuck, timed, *quick])
    timed_key = str(timed.job_key)

    await wait_all_done(admin, {str(s.job_key) for s in quick}, timeout=20, fleet=fleet)
    stuck_runs = [r for r in await read_ledger(admin) if r.job_key == stuck_key]
    assert len(stuck_runs) == 1 and stuck_runs[0].finished_at is None, "the quick jobs waited for the stuck handler"
    assert "stuck" in worker.stderr(), "the stuck handler was not reported"

    async def timed_failed_for_good() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await admin.fetchrow(
            f"select attempts, max_attempts, last_error, locked_by from {JOBS} where key = $1", timed_key
        )
        return row if row is not None and row["attempts"] == 2 and row["locked_by"] is None else None

    timed_row = await wait_for(timed_failed_for_good, timeout=20, message="the timed-out job retried and failed")
    stuck_row = await admin.fetchrow(f"select attempts, last_error, locked_by from {JOBS} where key = $1", stuck_key)
    assert stuck_row is not None and stuck_row["locked_by"] is None
    codes = await fleet.stop()
    assert codes == {worker.worker_id: 0}, codes

    assert "timed out" in timed_row["last_error"], timed_row["last_error"]
    assert "stuck" in stuck_row["last_error"], stuck_row["last_error"]
    timed_runs = [r for r in await read_ledger(admin) if r.job_key == timed_key]
    assert [r.outcome for r in timed_runs] == [None, None], timed_runs  # both attempts cancelled mid-sleep
    await check_ledger(admin, "timeouts", keys, faults=2, expect_failed={timed_key, stuck_key}, started=started)
    print(f"CHAOS timeouts: timed {timed_row['last_error']!r}; stuck {stuck_row['last_error']!r}")


async def test_errors_postgres_cannot_hold_are_recorded_and_the_worker_stops_on_sigterm(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    """Rule 8, issue #9 D1: error texts with a NUL or a lone surrogate among ordinary work. Each bad job ends
    failed with its text escaped, every other job succeeds once, nothing stays locked, and SIGTERM stops the
    worker at once with a summary that counts no lost lease."""
    started = time.monotonic()
    [worker] = await fleet.start(1, concurrency=4)
    nul, surrogate = new_key("nul"), new_key("surrogate")
    bad = [
        chaos_spec(nul, fail_times=1, max_attempts=1, fail_text=": a\x00b"),
        chaos_spec(surrogate, fail_times=1, max_attempts=1, fail_text=": x", fail_surrogate=True),
    ]
    ordinary = [chaos_spec(new_key("ok")) for _ in range(scaled(300))]
    keys = await enqueue(admin, [*ordinary[: len(ordinary) // 2], *bad, *ordinary[len(ordinary) // 2 :]])

    async def bad_ones_failed() -> bool:
        left = await admin.fetchval(
            f"select count(*) from {JOBS} where key = any($1) and (attempts < max_attempts or locked_by is not null)",
            [nul, surrogate],
        )
        return bool(left == 0)

    await wait_for(bad_ones_failed, timeout=20, message="the bad jobs failed for good")
    await wait_all_done(admin, keys - {nul, surrogate}, timeout=30, fleet=fleet)
    stopping = time.monotonic()
    codes = await fleet.stop(timeout=10)
    assert set(codes.values()) == {0}, codes
    assert time.monotonic() - stopping < 5, "SIGTERM of an idle worker took more than 5 s"

    errors = dict(await admin.fetch(f"select key, last_error from {JOBS} where key = any($1)", [nul, surrogate]))
    assert errors == {
        nul: "RuntimeError: planned failure 1 of 1: a\\x00b",
        surrogate: "RuntimeError: planned failure 1 of 1: x\\udcff",
    }
    summary = worker.summary()
    assert summary is not None
    assert (summary["succeeded"], summary["failed"], summary["lost_leases"]) == (len(ordinary), 2, 0)
    await check_ledger(admin, "unstorable-errors", keys, faults=2, expect_failed={nul, surrogate}, started=started)
    print(f"CHAOS unstorable-errors: {len(ordinary)} ordinary jobs, 2 bad ones recorded as {sorted(errors.values())}")
