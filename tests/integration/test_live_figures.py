"""The overview's live figures (backfill/admin/live.py, the statements of sql/admin.sql) against a real PostgreSQL,
with no runner: the jobs stay where they were put, and workers, throughput, recoveries and dead letters are rows
written by the test.

Covered: ready and scheduled counts per lane (capped per priority by ``count_cap``), the exact age of the oldest
ready job, custom lanes, named queues and tasks with their pauses, 60 zero-filled minutes of throughput and its
windows, the capped dead-letter count, the worker registry (alive, heartbeat age, held and rescued jobs), and
the snapshot shared for ``max_age`` seconds by any number of concurrent callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.admin import live
from backfill.admin.live import LiveFigures
from backfill.client.async_client import BackfillClient
from backfill.control import pause
from backfill.core import SchemaName
from backfill.migrations import migrate_all

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"


@pytest.fixture
async def client(pool: asyncpg.Pool[Any]) -> BackfillClient:
    await migrate_all(pool, SCHEMA)
    return BackfillClient(pool)


class Clock:
    """Stands in for the ``time`` module inside backfill.admin.live: the real clocks, plus ``skipped`` seconds."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def time(self) -> float:
        return time.time() + self.skipped


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(live, "time", fake)
    return fake


def _figures(pool: asyncpg.Pool[Any], **options: Any) -> LiveFigures:
    return LiveFigures(pool, SCHEMA, **options)


def _lane(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [lane for lane in snapshot["lanes"] if lane["name"] == name]
    assert len(found) == 1, [lane["name"] for lane in snapshot["lanes"]]
    return found[0]


def _named(snapshot: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in snapshot[kind]}


def _count_takes(monkeypatch: pytest.MonkeyPatch, figures: LiveFigures) -> list[int]:
    """Wrap the figures' refresh so that each run is counted (the list's length)."""
    taken: list[int] = []
    original: Callable[[], Awaitable[dict[str, Any]]] = figures._take

    async def counting() -> dict[str, Any]:
        taken.append(1)
        await asyncio.sleep(0)  # let the other callers reach the lock while this refresh runs
        return await original()

    monkeypatch.setattr(figures, "_take", counting)
    return taken


# -- ready and scheduled ------------------------------------------------------------------------------------


async def test_ready_counts_are_exact_under_the_cap(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    for i in range(4):
        await client.enqueue_bulk("live.bulk", {"i": i})
    for i in range(2):
        await client.enqueue_fast("live.fast", {"i": i})
    snapshot = await _figures(pool).overview()
    assert snapshot["count_cap"] == live.COUNT_CAP
    assert {lane["name"] for lane in snapshot["lanes"]} == {"fast", "bulk"}  # the built-in lanes, always listed
    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["ready"], bulk["ready_capped"]) == (4, False)
    assert (fast["ready"], fast["ready_capped"]) == (2, False)
    assert bulk["scheduled"] == fast["scheduled"] == 0
    assert bulk["jobs"] == {"waiting": 4, "scheduled": 0, "running": 0, "retrying": 0, "failed": 0}
    assert fast["jobs"]["waiting"] == 2
    assert snapshot["counted_at"] is not None


async def test_a_priority_over_the_cap_is_capped_and_another_priority_stays_exact(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(5):
        await client.enqueue_bulk("live.bulk", {"i": i})
    for i in range(2):
        await client.enqueue_fast("live.fast", {"i": i})
    snapshot = await _figures(pool, count_cap=3).overview()
    assert snapshot["count_cap"] == 3
    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["ready"], bulk["ready_capped"]) == (3, True)
    assert (fast["ready"], fast["ready_capped"]) == (2, False)
    assert bulk["jobs"]["waiting"] == 5  # the spaced full count is not capped


async def test_two_priorities_of_one_lane_each_under_the_cap_add_up_exactly(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for priority in (0, 0, 5, 5):
        await client.enqueue_bulk("live.bulk", priority=priority)
    for priority in (-5, -5, -20):
        await client.enqueue_fast("live.fast", priority=priority)
    snapshot = await _figures(pool, count_cap=3).overview()
    assert (_lane(snapshot, "bulk")["ready"], _lane(snapshot, "bulk")["ready_capped"]) == (4, False)
    assert (_lane(snapshot, "fast")["ready"], _lane(snapshot, "fast")["ready_capped"]) == (3, False)  # 2 + 1


async def test_the_oldest_ready_job_age_is_exact_even_when_the_count_is_capped(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(5):
        await client.enqueue_bulk("live.bulk", {"i": i})
    oldest = await client.enqueue_bulk("live.bulk", {"i": "oldest"})  # enqueued last, due an hour ago
    await pool.execute(f"update {JOBS} set run_at = now() - interval '1 hour' where id = $1", oldest.id)
    await client.enqueue_fast("live.fast")
    await pool.execute(f"update {JOBS} set run_at = now() - interval '90 seconds' where priority < 0")
    snapshot = await _figures(pool, count_cap=3).overview()
    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["ready"], bulk["ready_capped"]) == (3, True)
    assert bulk["oldest_ready_seconds"] == pytest.approx(3600, abs=30)
    assert fast["oldest_ready_seconds"] == pytest.approx(90, abs=30)


async def test_a_lane_without_ready_jobs_has_no_oldest_age(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    await client.enqueue_bulk("live.bulk")
    snapshot = await _figures(pool).overview()
    fast = _lane(snapshot, "fast")
    assert (fast["ready"], fast["ready_capped"], fast["oldest_ready_seconds"]) == (0, False, None)
    assert fast["scheduled"] == 0 and fast["scheduled_capped"] is False


async def test_delayed_jobs_are_scheduled_not_ready(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    await client.enqueue_bulk("live.bulk")
    for _ in range(2):
        await client.enqueue_bulk("live.bulk", delay=3600)
    await client.enqueue_fast("live.fast", delay=600)
    snapshot = await _figures(pool).overview()
    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["ready"], bulk["scheduled"], bulk["scheduled_capped"]) == (1, 2, False)
    assert (fast["ready"], fast["scheduled"], fast["scheduled_capped"]) == (0, 1, False)
    assert fast["oldest_ready_seconds"] is None
    assert bulk["jobs"]["scheduled"] == 2 and bulk["jobs"]["waiting"] == 1


async def test_scheduled_jobs_are_capped_per_priority(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    for i in range(4):
        await client.enqueue_bulk("live.bulk", {"i": i}, delay=3600 + i)
    for i in range(2):
        await client.enqueue_bulk("live.bulk", {"i": i}, delay=3600, priority=5)
    await client.enqueue_fast("live.fast", delay=60)
    await client.enqueue_bulk("live.bulk")
    snapshot = await _figures(pool, count_cap=3).overview()
    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["scheduled"], bulk["scheduled_capped"]) == (5, True)  # 3 of priority 0's 4, and priority 5's 2
    assert (bulk["ready"], bulk["ready_capped"]) == (1, False)
    assert (fast["scheduled"], fast["scheduled_capped"]) == (1, False)


async def test_custom_lane_jobs_count_in_their_lane_not_in_bulk(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for _ in range(2):
        await client.enqueue("live.report", lane="reports")
    await client.enqueue("live.report", lane="reports", delay=3600)
    await client.enqueue("live.export", lane="exports", priority=-5)  # a negative priority: still its own lane
    await client.enqueue_bulk("live.bulk")
    snapshot = await _figures(pool).overview()
    names = [lane["name"] for lane in snapshot["lanes"]]
    assert sorted(names[:2]) == ["bulk", "fast"] and names[2:] == ["exports", "reports"]  # built-ins, then by name
    reports, exports = _lane(snapshot, "reports"), _lane(snapshot, "exports")
    assert (reports["ready"], reports["scheduled"]) == (2, 1)
    assert reports["jobs"]["waiting"] == 2 and reports["jobs"]["scheduled"] == 1
    assert (exports["ready"], exports["scheduled"]) == (1, 0)
    assert (_lane(snapshot, "bulk")["ready"], _lane(snapshot, "bulk")["scheduled"]) == (1, 0)
    assert _lane(snapshot, "fast")["ready"] == 0


async def test_a_custom_lane_behind_a_capped_priority_is_not_shown_as_exactly_empty(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(3):
        await client.enqueue_bulk("live.bulk", {"i": i})  # priority 0, older
    await client.enqueue("live.report", lane="reports")  # priority 0 too, newer
    await pool.execute(f"update {JOBS} set run_at = now() - interval '1 minute' where priority = 0 and flags is null")
    snapshot = await _figures(pool, count_cap=3).overview()
    reports = _lane(snapshot, "reports")
    assert reports["jobs"]["waiting"] == 1  # the spaced full count sees it
    assert (reports["ready"], reports["ready_capped"]) == (0, True), reports  # "at least 0", not "exactly 0"
    assert _lane(snapshot, "fast")["ready_capped"] is False  # no negative priority was capped


async def test_a_queue_and_task_behind_a_capped_priority_are_said_to_be_possibly_missing(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(3):
        await client.enqueue_bulk("live.bulk", {"i": i})
    await pool.execute(f"update {JOBS} set run_at = now() - interval '1 minute'")
    await client.enqueue_bulk("live.other", queue="serial")
    snapshot = await _figures(pool, count_cap=3).overview()
    # Not in the sample, so not listed; the snapshot says some may be missing, and what is listed is "at least".
    assert "serial" not in _named(snapshot, "queues") and "live.other" not in _named(snapshot, "tasks")
    assert snapshot["sample_capped"] is True
    assert all(task["ready_capped"] for task in snapshot["tasks"])
    uncapped = await _figures(pool, count_cap=10).overview()
    assert uncapped["sample_capped"] is False and "serial" in _named(uncapped, "queues")


# -- named queues, tasks and pauses ---------------------------------------------------------------------------


async def test_named_queues_and_tasks_have_their_ready_counts(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    await client.enqueue_bulk("live.a", queue="q1")
    await client.enqueue_fast("live.a", queue="q1")
    await client.enqueue_bulk("live.b", queue="q2")
    await client.enqueue_bulk("live.b")
    await client.enqueue_bulk("live.c", delay=3600, queue="q3")  # scheduled: neither queue nor task is ready
    snapshot = await _figures(pool).overview()
    queues, tasks = _named(snapshot, "queues"), _named(snapshot, "tasks")
    assert list(queues) == ["q1", "q2"]  # sorted; jobs without a named queue make no row
    assert (queues["q1"]["ready"], queues["q1"]["ready_capped"], queues["q1"]["paused"]) == (2, False, False)
    assert queues["q2"]["ready"] == 1
    assert queues["q1"]["oldest_ready_seconds"] is not None
    assert list(tasks) == ["live.a", "live.b"]
    assert (tasks["live.a"]["ready"], tasks["live.b"]["ready"]) == (2, 2)


async def test_queue_and_task_counts_are_capped_with_their_priority(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    for i in range(4):
        await client.enqueue_bulk("live.a", {"i": i}, queue="q1")
    await client.enqueue_fast("live.b", queue="q2")
    snapshot = await _figures(pool, count_cap=3).overview()
    queues, tasks = _named(snapshot, "queues"), _named(snapshot, "tasks")
    assert (queues["q1"]["ready"], queues["q1"]["ready_capped"]) == (3, True)
    assert (tasks["live.a"]["ready"], tasks["live.a"]["ready_capped"]) == (3, True)
    # A queue or task may have jobs at any priority: one that hit the cap may hide more of theirs too.
    assert (queues["q2"]["ready"], queues["q2"]["ready_capped"]) == (1, True)
    assert (tasks["live.b"]["ready"], tasks["live.b"]["ready_capped"]) == (1, True)
    assert _lane(snapshot, "fast")["ready_capped"] is False  # the fast lane has only negative priorities


async def test_paused_lanes_queues_and_tasks_are_marked(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    await pool.execute(
        "insert into graphile_worker.backfill_lanes (name, concurrency, declared_by) values ('reports', 2, 'test')"
    )
    await client.enqueue("live.report", lane="reports", queue="q1")
    await client.enqueue_bulk("live.a", queue="q2")
    await client.enqueue_bulk("live.b")
    await pause(pool, SCHEMA, lane="bulk", by="alice", reason="deploy")
    await pause(pool, SCHEMA, lane="reports", by="alice")
    await pause(pool, SCHEMA, queue="q1", by="alice")
    await pause(pool, SCHEMA, task="live.b", by="alice")
    snapshot = await _figures(pool).overview()
    lanes = {lane["name"]: lane["paused"] for lane in snapshot["lanes"]}
    assert lanes == {"fast": False, "bulk": True, "reports": True}
    queues, tasks = _named(snapshot, "queues"), _named(snapshot, "tasks")
    assert (queues["q1"]["paused"], queues["q2"]["paused"]) == (True, False)
    assert (tasks["live.a"]["paused"], tasks["live.b"]["paused"], tasks["live.report"]["paused"]) == (
        False,
        True,
        False,
    )
    assert queues["q1"]["ready"] == 1  # paused work stays ready
    assert sorted((p.kind.value, p.name) for p in snapshot["pauses"]) == [
        ("lane", "bulk"),
        ("lane", "reports"),
        ("queue", "q1"),
        ("task", "live.b"),
    ]


# -- throughput -----------------------------------------------------------------------------------------------


async def test_throughput_is_60_zero_filled_minutes_with_windows(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    rows = {0: (6, 2), 3: (10, 0), 70: (100, 100)}  # minutes ago: (succeeded, failed)
    minutes_of: dict[int, datetime] = {}
    for ago, (succeeded, failed) in rows.items():
        minutes_of[ago] = await pool.fetchval(
            "insert into graphile_worker.backfill_throughput (minute, lane, succeeded, failed) "
            "values (date_trunc('minute', now()) - make_interval(mins => $1), 'bulk', $2, $3) returning minute",
            ago,
            succeeded,
            failed,
        )
    await pool.execute(
        "insert into graphile_worker.backfill_throughput (minute, lane, succeeded, failed) "
        "values (date_trunc('minute', now()), 'reports', 1, 1)"
    )
    snapshot = await _figures(pool).overview()
    bulk = _lane(snapshot, "bulk")
    minutes = bulk["minutes"]
    assert len(minutes) == 60
    this_minute = snapshot["at"].replace(second=0, microsecond=0)
    assert [m["minute"] for m in minutes] == [this_minute - timedelta(minutes=59 - i) for i in range(60)]

    # Where each row lands, from the snapshot's own time (the minute may have turned since the inserts).
    expected = {w: [0, 0] for w in ("1m", "5m", "15m", "60m")}
    for ago, (succeeded, failed) in rows.items():
        age = int((this_minute - minutes_of[ago]).total_seconds() // 60)
        if age < 60:
            assert (minutes[59 - age]["succeeded"], minutes[59 - age]["failed"]) == (succeeded, failed)
        for window, length in (("1m", 1), ("5m", 5), ("15m", 15), ("60m", 60)):
            if age < length:
                expected[window][0] += succeeded
                expected[window][1] += failed
    assert sum(m["succeeded"] for m in minutes) == 16  # the row 70 minutes old is not counted
    assert sum(m["failed"] for m in minutes) == 2
    for window, (succeeded, failed) in expected.items():
        got = bulk["throughput"][window]
        assert (got["succeeded"], got["failed"]) == (succeeded, failed), window
        assert got["failure_rate"] == pytest.approx(failed / (succeeded + failed) if succeeded + failed else 0.0)
    assert bulk["throughput"]["60m"] == {"succeeded": 16, "failed": 2, "failure_rate": pytest.approx(2 / 18)}

    # A lane with only throughput rows is listed; one with none has 60 zero minutes.
    reports = _lane(snapshot, "reports")
    assert reports["throughput"]["60m"] == {"succeeded": 1, "failed": 1, "failure_rate": 0.5}
    fast = _lane(snapshot, "fast")
    assert len(fast["minutes"]) == 60
    assert all(m["succeeded"] == m["failed"] == 0 for m in fast["minutes"])
    assert fast["throughput"]["60m"] == {"succeeded": 0, "failed": 0, "failure_rate": 0.0}


# -- dead letters ---------------------------------------------------------------------------------------------


async def _dead_letters(pool: asyncpg.Pool[Any], dead: int, requeued: int) -> None:
    for i in range(dead + requeued):
        state, requeued_job = ("dead", None) if i < dead else ("requeued", 10_000 + i)
        await pool.execute(
            "insert into graphile_worker.backfill_dlq (job_id, task_identifier, attempts, max_attempts, reason, "
            "created_at, run_at, failed_at, state, requeued_job_id) "
            "values ($1, 'live.dead', 3, 3, 'attempts_exhausted', now(), now(), now(), $2, $3)",
            i + 1,
            state,
            requeued_job,
        )


async def test_dead_letters_are_counted_up_to_the_cap(client: BackfillClient, pool: asyncpg.Pool[Any]) -> None:
    assert (await _figures(pool).overview())["dead_letters"] == {"dead": 0, "capped": False}
    await _dead_letters(pool, dead=5, requeued=2)
    assert (await _figures(pool, count_cap=3).overview())["dead_letters"] == {"dead": 3, "capped": True}
    assert (await _figures(pool, count_cap=10).overview())["dead_letters"] == {"dead": 5, "capped": False}


# -- the worker registry --------------------------------------------------------------------------------------


async def test_the_registry_shows_alive_and_dead_workers_with_held_and_rescued_jobs(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute(
        "insert into graphile_worker.backfill_workers "
        "(worker_id, hostname, pid, started_at, last_heartbeat_at, dead_after, concurrency, lane) values "
        "('alive-bulk', 'host-a', 11, now() - interval '1 hour', now() - interval '2 seconds', '30 seconds', 3, "
        "'bulk'), "
        "('alive-fast', 'host-a', 11, now() - interval '30 minutes', now(), '30 seconds', 2, 'fast'), "
        "('dead-bulk', 'host-b', 22, now() - interval '2 hours', now() - interval '10 minutes', '30 seconds', 4, "
        "'bulk')"
    )
    await pool.execute(
        "update graphile_worker.backfill_workers set declared_dead_at = now() where worker_id = 'dead-bulk'"
    )
    jobs = [await client.enqueue_bulk("live.bulk", {"i": i}) for i in range(4)]
    await client.enqueue_fast("live.fast")
    # Two jobs held by the live Bulk worker, one by a lock owner that never registered (a Node worker, say).
    await pool.execute(
        f"update {JOBS} set locked_by = 'alive-bulk', locked_at = now() where id = any($1::bigint[])",
        [jobs[0].id, jobs[1].id],
    )
    await pool.execute(f"update {JOBS} set locked_by = 'node-1', locked_at = now() where id = $1", jobs[2].id)
    await pool.execute(
        "insert into graphile_worker.backfill_job_recoveries (job_id, recoveries, last_recovered_at, last_worker_id) "
        "values (1001, 1, now(), 'dead-bulk'), (1002, 2, now(), 'dead-bulk'), (1003, 1, now(), 'alive-fast')"
    )
    snapshot = await _figures(pool).overview()
    registry = {row["worker_id"]: row for row in snapshot["registry"]}
    assert [row["worker_id"] for row in snapshot["registry"]] == ["alive-fast", "alive-bulk", "dead-bulk"]  # newest
    alive_bulk, alive_fast, dead = registry["alive-bulk"], registry["alive-fast"], registry["dead-bulk"]
    assert (alive_bulk["alive"], alive_fast["alive"], dead["alive"]) == (True, True, False)
    assert alive_bulk["heartbeat_age_seconds"] == pytest.approx(2, abs=15)
    assert dead["heartbeat_age_seconds"] == pytest.approx(600, abs=15)
    assert dead["declared_dead_at"] is not None and alive_bulk["declared_dead_at"] is None
    assert (alive_bulk["held_jobs"], alive_fast["held_jobs"], dead["held_jobs"]) == (2, 0, 0)
    assert (alive_bulk["rescued_jobs"], alive_fast["rescued_jobs"], dead["rescued_jobs"]) == (0, 1, 2)
    assert (dead["hostname"], dead["pid"], dead["concurrency"], dead["lane"]) == ("host-b", 22, 4, "bulk")
    assert snapshot["workers"] == {"alive": 2, "dead": 1, "unregistered_lock_holders": 1}

    bulk, fast = _lane(snapshot, "bulk"), _lane(snapshot, "fast")
    assert (bulk["workers"], bulk["slots"], bulk["busy"]) == (1, 3, 2)  # the dead worker's slots do not count
    assert (fast["workers"], fast["slots"], fast["busy"]) == (1, 2, 0)
    assert bulk["ready"] == 1  # the held jobs are not ready
    assert bulk["jobs"]["running"] == 3 and bulk["jobs"]["waiting"] == 1


async def test_a_live_worker_of_a_lane_without_jobs_lists_the_lane(
    client: BackfillClient, pool: asyncpg.Pool[Any]
) -> None:
    await pool.execute(
        "insert into graphile_worker.backfill_workers (worker_id, hostname, pid, dead_after, concurrency, lane) "
        "values ('w-reports', 'host', 1, '30 seconds', 5, 'reports')"
    )
    snapshot = await _figures(pool).overview()
    reports = _lane(snapshot, "reports")
    assert (reports["workers"], reports["slots"], reports["busy"], reports["ready"]) == (1, 5, 0, 0)


# -- one snapshot for every viewer ----------------------------------------------------------------------------


async def test_calls_within_max_age_share_one_snapshot(
    client: BackfillClient, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    await client.enqueue_bulk("live.bulk")
    figures = _figures(pool, max_age=60.0)
    taken = _count_takes(monkeypatch, figures)
    first = await figures.overview()
    await client.enqueue_bulk("live.bulk")
    clock.skipped += 30.0
    second = await figures.overview()
    assert second is first
    assert len(taken) == 1
    assert _lane(second, "bulk")["ready"] == 1  # the job enqueued since is not seen yet

    clock.skipped += 40.0  # 70 s after the snapshot: past max_age
    third = await figures.overview()
    assert third is not first
    assert len(taken) == 2
    assert _lane(third, "bulk")["ready"] == 2


async def test_forget_takes_a_new_snapshot_that_shows_what_changed(
    client: BackfillClient, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _figures(pool, max_age=3600.0)
    taken = _count_takes(monkeypatch, figures)
    first = await figures.overview()
    assert _lane(first, "bulk")["ready"] == 0
    await client.enqueue_bulk("live.bulk")
    assert await figures.overview() is first
    figures.forget()
    fresh = await figures.overview()
    assert fresh is not first
    assert _lane(fresh, "bulk")["ready"] == 1
    assert await figures.overview() is fresh
    assert len(taken) == 2


async def test_max_age_zero_takes_a_fresh_snapshot_every_call(
    client: BackfillClient, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _figures(pool, max_age=0.0)
    taken = _count_takes(monkeypatch, figures)
    snapshots = []
    for i in range(3):
        snapshots.append(await figures.overview())
        await client.enqueue_bulk("live.bulk", {"i": i})
    assert len({id(s) for s in snapshots}) == 3
    assert [_lane(s, "bulk")["ready"] for s in snapshots] == [0, 1, 2]
    assert len(taken) == 3


async def test_concurrent_calls_on_an_expired_snapshot_make_one_refresh(
    client: BackfillClient, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    await client.enqueue_bulk("live.bulk")
    figures = _figures(pool, max_age=60.0)
    taken = _count_takes(monkeypatch, figures)
    stale = await figures.overview()
    clock.skipped += 70.0
    results = await asyncio.gather(*(figures.overview() for _ in range(10)))
    assert len(taken) == 2  # the first snapshot, then one refresh for all ten
    assert all(result is results[0] for result in results)
    assert results[0] is not stale


async def test_concurrent_first_calls_make_one_snapshot(
    client: BackfillClient, pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _figures(pool)
    taken = _count_takes(monkeypatch, figures)
    results = await asyncio.gather(*(figures.overview() for _ in range(10)))
    assert len(taken) == 1
    assert all(result is results[0] for result in results)


async def test_the_full_counts_are_spaced_between_snapshots(
    client: BackfillClient, pool: asyncpg.Pool[Any], clock: Clock
) -> None:
    await client.enqueue_bulk("live.bulk")
    figures = _figures(pool, max_age=0.0, full_count_share=0.0001)  # due again 10,000 times its duration later
    first = await figures.overview()
    await client.enqueue_bulk("live.bulk")
    again = await figures.overview()  # a new snapshot, but the full count is not due yet
    assert _lane(again, "bulk")["ready"] == 2
    assert _lane(again, "bulk")["jobs"]["waiting"] == 1
    assert again["counted_at"] == first["counted_at"]
    clock.skipped += 1_000_000.0  # far past duration / share
    later = await figures.overview()
    assert _lane(later, "bulk")["jobs"]["waiting"] == 2
    assert later["counted_at"] > first["counted_at"]
