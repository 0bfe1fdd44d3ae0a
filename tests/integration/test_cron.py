"""The cron scheduler against PostgreSQL: job contents, exactly once across schedulers, fill, transform, timer.

Time is always explicit (``schedule_minute(moment)``, ``backfill(now)``) or a fake clock whose sleep
advances it, so no test waits for a real minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.events import Event, Events
from backfill.core.jobs import JobSpec
from backfill.core.schema import SchemaName
from backfill.core.upkeep.cron import RETRY_MIN_DELAY, CronScheduler, Transform
from backfill.core.upkeep.crontab import CronItem, parse_crontab
from tests.support.waiting import wait_for_event

SCHEMA = SchemaName("graphile_worker")
KNOWN = "graphile_worker._private_known_crontabs"
T = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
JOBS_SQL = """
    select j.id, t.identifier as task, j.payload::text as payload, q.queue_name, j.run_at, j.max_attempts,
           j.key, j.priority
      from graphile_worker._private_jobs j
      join graphile_worker._private_tasks t on t.id = j.task_id
      left join graphile_worker._private_job_queues q on q.id = j.job_queue_id
     order by j.id
"""


def _scheduler(
    pool: asyncpg.Pool[Any],
    crontab: str | list[CronItem],
    events: Events | None = None,
    transform: Transform | None = None,
    **timer: Any,
) -> CronScheduler:
    items = parse_crontab(crontab) if isinstance(crontab, str) else crontab
    return CronScheduler(pool, SCHEMA, items, events=events or Events(), worker_id="w1", transform=transform, **timer)


async def _jobs(conn: asyncpg.Connection[Any]) -> list[asyncpg.Record]:
    return list(await conn.fetch(JOBS_SQL))


def _crons(rows: list[asyncpg.Record]) -> list[tuple[str, str, bool]]:
    """(task, _cron.ts, _cron.backfilled) of each job."""
    return [
        (row["task"], json.loads(row["payload"])["_cron"]["ts"], json.loads(row["payload"])["_cron"]["backfilled"])
        for row in rows
    ]


def _recording(events: Events) -> list[Event]:
    seen: list[Event] = []
    events.on("*", seen.append)
    return seen


async def test_scheduling_a_minute_adds_the_job_as_graphile_would(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events = Events()
    seen = _recording(events)
    line = '0 12 * * * send_report ?id=daily&max=3&queue=reports&jobKey=rep&priority=5 {"to": "ops", "_cron": 1}'
    scheduler = _scheduler(pool, line, events)

    job_ids = await scheduler.schedule_minute(T + timedelta(seconds=20))

    [job] = await _jobs(conn)
    assert job_ids == [job["id"]]
    # The item's payload first, then _cron replacing any _cron the item had; ts as JS toISOString writes it.
    assert job["payload"] == '{"to":"ops","_cron":{"ts":"2030-01-01T12:00:00.000Z","backfilled":false}}'
    assert (job["task"], job["queue_name"], job["run_at"], job["max_attempts"], job["key"], job["priority"]) == (
        "send_report",
        "reports",
        T,
        3,
        "rep",
        5,
    )
    known = await conn.fetchrow(f"select * from {KNOWN}")
    assert known is not None
    assert dict(known) == {"identifier": "daily", "known_since": T, "last_execution": T}
    assert [e.name for e in seen] == ["cron:schedule", "cron:scheduled"]
    assert seen[1]["timestamp"] == T and seen[1]["jobs"] == job_ids and seen[1]["worker_id"] == "w1"
    assert [item.identifier for item in seen[1]["items"]] == ["daily"]


async def test_only_matching_items_are_scheduled_and_a_minute_only_once(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    scheduler = _scheduler(pool, "0 12 * * * noon\n*/15 * * * * quarter\n1 12 * * * never_now")
    assert len(await scheduler.schedule_minute(T)) == 2
    assert await scheduler.schedule_minute(T) == []  # the same minute again
    assert await scheduler.schedule_minute(T - timedelta(minutes=15)) == []  # older than the last execution
    assert sorted(task for task, _, _ in _crons(await _jobs(conn))) == ["noon", "quarter"]


async def test_two_schedulers_on_one_minute_make_one_job_per_identifier(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    crontab = "\n".join(f"* * * * * task_{n % 3} ?id=item_{n}" for n in range(20))
    async with (
        asyncpg.create_pool(database_url, min_size=2, max_size=4) as pool_a,
        asyncpg.create_pool(database_url, min_size=2, max_size=4) as pool_b,
    ):
        a, b = _scheduler(pool_a, crontab), _scheduler(pool_b, crontab)
        for minute in range(5):
            moment = T + timedelta(minutes=minute)
            ids_a, ids_b = await asyncio.gather(a.schedule_minute(moment), b.schedule_minute(moment))
            assert len(ids_a) + len(ids_b) == 20
    rows = await _jobs(conn)
    keys = Counter((json.loads(r["payload"])["_cron"]["ts"], r["task"]) for r in rows)
    assert len(rows) == 100
    assert set(keys.values()) == {20 // 3 + 1, 20 // 3}  # 7, 7 and 6 items per task, once each minute
    assert (
        await conn.fetchval(f"select count(*) from {KNOWN} where last_execution = $1", T + timedelta(minutes=4)) == 20
    )


async def test_fill_schedules_missed_minutes_in_order_after_downtime(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events = Events()
    seen = _recording(events)
    scheduler = _scheduler(pool, '*/10 * * * * report ?fill=1h {"k": 1}\n*/10 * * * * plain', events)
    # Known for days, last run 40 minutes before "now": 11:30, 11:40, 11:50 and 12:00 were missed.
    await conn.execute(
        f"insert into {KNOWN} values ('report', $1, $2), ('plain', $1, $2)",
        T - timedelta(days=3),
        T - timedelta(minutes=40),
    )
    now = T + timedelta(seconds=30)

    job_ids = await scheduler.register_and_backfill(now)

    rows = await _jobs(conn)
    assert [r["id"] for r in rows] == job_ids
    assert _crons(rows) == [
        ("report", ts, True)
        for ts in (
            "2030-01-01T11:30:00.000Z",
            "2030-01-01T11:40:00.000Z",
            "2030-01-01T11:50:00.000Z",
            "2030-01-01T12:00:00.000Z",
        )
    ]
    assert [r["run_at"] for r in rows] == [T - timedelta(minutes=m) for m in (30, 20, 10, 0)]
    assert json.loads(rows[0]["payload"])["k"] == 1
    assert [e["timestamp"] for e in seen if e.name == "cron:backfill"] == [r["run_at"] for r in rows]
    # A second start fills nothing more: the minutes are recorded.
    assert await scheduler.register_and_backfill(now + timedelta(seconds=5)) == []


async def test_fill_covers_only_its_window_and_nothing_before_known_since(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    scheduler = _scheduler(pool, "* * * * * short ?fill=3m\n* * * * * recent ?fill=1d")
    await conn.execute(
        f"insert into {KNOWN} values ('short', $1, null), ('recent', $2, null)",
        T - timedelta(days=1),
        T - timedelta(minutes=2),
    )
    await scheduler.register_and_backfill(T + timedelta(seconds=1))
    assert _crons(await _jobs(conn)) == [
        ("short", "2030-01-01T11:58:00.000Z", True),
        ("recent", "2030-01-01T11:58:00.000Z", True),
        ("short", "2030-01-01T11:59:00.000Z", True),
        ("recent", "2030-01-01T11:59:00.000Z", True),
        ("short", "2030-01-01T12:00:00.000Z", True),
        ("recent", "2030-01-01T12:00:00.000Z", True),
    ]


async def test_a_new_identifier_is_registered_without_backfill(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    scheduler = _scheduler(pool, "* * * * * fresh ?fill=1d")
    assert await scheduler.register_and_backfill(T) == []
    row = await conn.fetchrow(f"select * from {KNOWN}")
    assert row is not None
    assert dict(row) == {"identifier": "fresh", "known_since": T, "last_execution": None}  # as Graphile writes it
    assert await _jobs(conn) == []


async def test_transform_can_change_or_drop_a_job(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    def transform(spec: JobSpec) -> JobSpec | None:
        if spec.identifier == "dropped":
            return None
        return replace(spec, priority=9, queue_name="changed", payload={**spec.payload, "seen": True})

    scheduler = _scheduler(pool, "0 * * * * kept\n0 * * * * dropped", transform=transform)
    [job_id] = await scheduler.schedule_minute(T)
    [job] = await _jobs(conn)
    assert (job["id"], job["task"], job["priority"], job["queue_name"]) == (job_id, "kept", 9, "changed")
    assert json.loads(job["payload"]) == {
        "_cron": {"ts": "2030-01-01T12:00:00.000Z", "backfilled": False},
        "seen": True,
    }
    # The dropped job's minute still counts as executed, so no other worker schedules it either.
    assert await conn.fetchval(f"select last_execution from {KNOWN} where identifier = 'dropped'") == T


async def test_a_failing_transform_skips_only_its_item_and_leaves_the_minute_open(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    def transform(spec: JobSpec) -> JobSpec:
        if spec.identifier == "broken":
            raise RuntimeError("bug in the interceptor")
        return spec

    scheduler = _scheduler(pool, "0 * * * * fine\n0 * * * * broken", transform=transform)
    assert len(await scheduler.schedule_minute(T)) == 1
    assert [task for task, _, _ in _crons(await _jobs(conn))] == ["fine"]
    assert await conn.fetchval(f"select count(*) from {KNOWN} where identifier = 'broken'") == 0


class FakeTime:
    """A clock that moves only when the scheduler sleeps; after ``budget`` sleeps, sleep blocks for good."""

    def __init__(self, now: datetime, budget: int, advance: Callable[[float], float] | None = None) -> None:
        self.now = now
        self.budget = budget
        self.sleeps: list[float] = []
        self.advance = advance or (lambda seconds: seconds)
        self.spent = asyncio.Event()
        self.hooks: list[Callable[[], Any]] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if len(self.sleeps) > self.budget:
            self.spent.set()
            await asyncio.Event().wait()
        self.now += timedelta(seconds=self.advance(seconds))
        for hook in self.hooks:
            await hook()


async def _run_until_spent(scheduler: CronScheduler, time: FakeTime) -> None:
    task = asyncio.create_task(scheduler.run())
    try:
        await wait_for_event(time.spent, timeout=20, message="the scheduler's sleep budget")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_schedules_each_minute_at_its_start(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    events = Events()
    seen = _recording(events)
    time = FakeTime(T + timedelta(seconds=30), budget=3)
    scheduler = _scheduler(pool, "* * * * * tick", events, clock=time.clock, sleep=time.sleep)
    await _run_until_spent(scheduler, time)
    assert _crons(await _jobs(conn)) == [
        ("tick", "2030-01-01T12:01:00.000Z", False),
        ("tick", "2030-01-01T12:02:00.000Z", False),
        ("tick", "2030-01-01T12:03:00.000Z", False),
    ]
    assert time.sleeps[0] == pytest.approx(30.001)  # to the start of the next minute, plus a millisecond
    names = [e.name for e in seen]
    assert names[:2] == ["cron:starting", "cron:started"] and names.count("cron:scheduled") == 3
    assert "cron:overdueTimer" not in names and "cron:prematureTimer" not in names


async def test_run_catches_up_after_a_stall_and_rearms_an_early_timer(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    events = Events()
    seen = _recording(events)
    steps = iter([5 * 60.0, 0.5])  # the first sleep overruns by 4 minutes, the next one wakes too early

    time = FakeTime(T + timedelta(seconds=59), budget=3, advance=lambda seconds: next(steps, seconds))
    scheduler = _scheduler(pool, "* * * * * tick", events, clock=time.clock, sleep=time.sleep)
    await _run_until_spent(scheduler, time)
    assert [ts for _, ts, _ in _crons(await _jobs(conn))] == [f"2030-01-01T12:0{m}:00.000Z" for m in range(1, 7)]
    overdue = [e for e in seen if e.name == "cron:overdueTimer"]
    assert overdue[0]["expected"] == T + timedelta(minutes=1) and len(overdue) == 4  # 12:01 .. 12:04 were late
    assert [e["expected"] for e in seen if e.name == "cron:prematureTimer"] == [T + timedelta(minutes=6)]


async def test_run_retries_a_failed_minute_without_losing_it(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    time = FakeTime(T + timedelta(seconds=50), budget=4)
    scheduler = _scheduler(pool, "* * * * * tick", clock=time.clock, sleep=time.sleep)

    async def break_then_repair() -> None:
        if len(time.sleeps) == 1:  # before 12:01 is scheduled, the table vanishes
            await conn.execute(f"alter table {KNOWN} rename to known_away")
        elif len(time.sleeps) == 3:  # after two failed attempts, it comes back
            await conn.execute("alter table graphile_worker.known_away rename to _private_known_crontabs")

    time.hooks.append(break_then_repair)
    with caplog.at_level(logging.ERROR, logger="backfill.cron"):
        await _run_until_spent(scheduler, time)
    assert time.sleeps[1:3] == [pytest.approx(RETRY_MIN_DELAY), pytest.approx(RETRY_MIN_DELAY * 1.5)]
    assert [ts for _, ts, _ in _crons(await _jobs(conn))] == ["2030-01-01T12:01:00.000Z", "2030-01-01T12:02:00.000Z"]
    assert "scheduling 2030-01-01T12:01:00.000Z failed (attempt 2)" in caplog.text


async def test_run_survives_its_connections_being_killed(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    time = FakeTime(T + timedelta(seconds=1), budget=12)
    scheduler = _scheduler(pool, "* * * * * tick", clock=time.clock, sleep=time.sleep)

    async def kill_the_pool() -> None:
        await conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and pid <> pg_backend_pid()"
        )

    time.hooks.append(kill_the_pool)
    await _run_until_spent(scheduler, time)
    tss = [ts for _, ts, _ in _crons(await _jobs(conn))]
    assert len(tss) == len(set(tss)) >= 4  # some sleeps were retry backoffs; every minute reached, once
    assert tss == sorted(tss) and tss[0] == "2030-01-01T12:01:00.000Z"
    minutes = [int(ts[14:16]) for ts in tss]
    assert minutes == list(range(1, len(minutes) + 1))
