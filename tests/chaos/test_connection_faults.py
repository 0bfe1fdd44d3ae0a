"""Connection faults: every worker connection terminated under load, and only the LISTEN connection killed."""

from __future__ import annotations

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
    new_key,
    scaled,
    wait_all_done,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos

# Every backend serving a chaos worker process (their DSNs carry application_name = worker id), and the keys
# of the jobs locked at that instant: one statement, so both come from one moment.
_TERMINATE_WORKER_BACKENDS = f"""
    with locked as (
      select coalesce(array_agg(key), '{{}}') as keys from {JOBS} where locked_by is not null
    ), killed as (
      select count(*) filter (where pg_terminate_backend(pid)) as count
        from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and application_name like 'chaos-w%'
    )
    select killed.count, locked.keys from killed, locked
"""


async def _done_count(admin: asyncpg.Connection[Any], keys: list[str]) -> int:
    left = await admin.fetchval(f"select count(*) from {JOBS} where key = any($1)", keys)
    return len(keys) - int(left)


async def test_workers_survive_all_their_connections_being_terminated_under_load(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    job_count = scaled(600)
    kill_rounds = scaled(2)
    concurrency = 4
    queues = [f"q{n}" for n in range(4)]
    specs = [
        chaos_spec(new_key("pt"), queue=random.choice(queues) if n % 4 == 0 else None, sleep_ms=random.randint(0, 20))
        for n in range(job_count)
    ]
    workers = await fleet.start(scaled(3, minimum=2), concurrency=concurrency, poll_interval=1.0)
    keys = await enqueue(admin, specs)
    key_list = list(keys)

    excused: set[str] = set()
    terminated = 0
    for round_number in range(kill_rounds):
        # Spread the rounds over the run: each waits for its share of the jobs to be done.
        target = job_count * (round_number + 1) // (kill_rounds + 2)

        async def reached(target: int = target) -> bool:
            return await _done_count(admin, key_list) >= target

        await wait_for(reached, timeout=60, message=f"{target} jobs done before kill round {round_number}")
        row = await admin.fetchrow(_TERMINATE_WORKER_BACKENDS)
        assert row is not None
        assert row["count"] > 0, "no worker backend was found to terminate"
        terminated += int(row["count"])
        excused.update(row["keys"])
        for worker in workers:
            assert worker.alive, f"{worker.worker_id} died after kill round {round_number}:\n{worker.stderr()[-3000:]}"

    await wait_all_done(admin, keys, timeout=60 * max(1.0, job_count / 600), fleet=fleet)
    assert all(w.alive for w in workers), "a worker process died"
    codes = await fleet.stop()
    assert codes == {w.worker_id: 0 for w in workers}, codes

    # Jobs locked at a kill are excused (their results may have been in flight); beyond them, a claim whose
    # reply was lost could run again: at most one batch per worker per round.
    report = await check_ledger(
        admin,
        "terminate-backends",
        keys,
        faults=kill_rounds,
        excused=excused,
        max_duplicates=kill_rounds * len(workers) * concurrency,
        started=started,
    )
    print(f"CHAOS terminate-backends: {terminated} backends terminated, {len(excused)} jobs locked at the kills")
    assert report.lost == 0


async def test_a_killed_listen_connection_reconnects_and_catches_up_without_waiting_for_the_poll(
    fleet: Fleet, admin: asyncpg.Connection[Any]
) -> None:
    started = time.monotonic()
    poll_interval = 30.0  # NOTIFY (and the catch-up fetch after reconnecting) is the only timely path
    prompt = 10.0
    (worker,) = await fleet.start(1, concurrency=4, poll_interval=poll_interval)

    async def listener_pids() -> list[int]:
        rows = await admin.fetch(
            "select pid from pg_stat_activity where datname = current_database() and application_name = $1"
            " and query ilike 'listen%'",
            worker.worker_id,
        )
        return [int(r["pid"]) for r in rows]

    (first_listener,) = await wait_for(listener_pids, timeout=10, message="the worker's LISTEN connection")
    # Prove the baseline first: with the listener up, a job is picked up at once.
    warm = await enqueue(admin, [chaos_spec(new_key("warm"))])
    await wait_all_done(admin, warm, timeout=prompt, fleet=fleet)

    assert await admin.fetchval("select pg_terminate_backend($1)", first_listener)
    # Enqueued while the listener may still be down: their NOTIFY can be lost, so only the catch-up fetch
    # after reconnecting finds them before the 30 s poll.
    t0 = time.monotonic()
    during = await enqueue(admin, [chaos_spec(new_key("during")) for _ in range(scaled(5))])
    await wait_all_done(admin, during, timeout=prompt, fleet=fleet)
    catch_up = time.monotonic() - t0

    async def new_listener() -> list[int]:
        return [pid for pid in await listener_pids() if pid != first_listener]

    await wait_for(new_listener, timeout=prompt, message="a new LISTEN connection")
    t1 = time.monotonic()
    after = await enqueue(admin, [chaos_spec(new_key("after")) for _ in range(scaled(5))])
    await wait_all_done(admin, after, timeout=prompt, fleet=fleet)
    notify_latency = time.monotonic() - t1

    assert worker.alive
    codes = await fleet.stop()
    assert codes == {worker.worker_id: 0}, codes
    report = await check_ledger(admin, "kill-listener", warm | during | after, faults=1, started=started)
    assert report.duplicates == 0
    print(
        f"CHAOS kill-listener: catch-up {catch_up:.2f}s, after reconnect {notify_latency:.2f}s (poll {poll_interval}s)"
    )
    assert catch_up < prompt and notify_latency < prompt
