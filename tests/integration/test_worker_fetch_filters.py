"""What a worker must not fetch: jobs with a forbidden flag, and jobs of tasks it does not implement."""

from __future__ import annotations

from typing import Any

import asyncpg

from backfill.core.enqueue import add_job
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, job_row, running
from tests.support.waiting import wait_for


def recording_registry(ran: list[str]) -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("known")
    async def known(payload: dict[str, str]) -> None:
        ran.append(payload["name"])

    return registry


async def test_jobs_with_a_forbidden_flag_are_not_fetched(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[str] = []
    paused = await add_job(pool, "known", {"name": "paused"}, flags=["paused"])
    paused_too = await add_job(pool, "known", {"name": "paused-and-more"}, flags=["other", "paused"])
    await add_job(pool, "known", {"name": "other-flag"}, flags=["other"])
    await add_job(pool, "known", {"name": "no-flags"})
    options = fast_options(forbidden_flags=["paused", "frozen"])

    summary = await Worker(database_url, tasks=recording_registry(ran), options=options).run_once()

    assert sorted(ran) == ["no-flags", "other-flag"]
    assert summary.processed == 2
    for job in (paused, paused_too):
        row = await job_row(conn, job.id)
        assert row is not None
        assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, None)


async def test_jobs_of_unknown_tasks_are_never_fetched(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[str] = []
    stranger = await add_job(pool, "implemented_elsewhere", {"name": "stranger"}, queue_name="shared")
    await add_job(pool, "known", {"name": "mine"})
    before = await job_row(conn, stranger.id)
    summary = await Worker(database_url, tasks=recording_registry(ran), options=fast_options()).run_once()
    worker = Worker(database_url, tasks=recording_registry(ran), options=fast_options())
    async with running(worker):
        await add_job(pool, "known", {"name": "mine-while-running"})
        await wait_for(lambda: _ran(ran, "mine-while-running"), timeout=5)

    assert summary.processed == 1
    assert sorted(ran) == ["mine", "mine-while-running"]
    assert await job_row(conn, stranger.id) == before  # untouched: attempts 0, unlocked, same updated_at
    assert before is not None
    assert (before["attempts"], before["locked_by"]) == (0, None)
    queue = await conn.fetchrow("select locked_by from graphile_worker._private_job_queues where queue_name = 'shared'")
    assert queue is not None
    assert queue["locked_by"] is None


async def _ran(ran: list[str], name: str) -> bool:
    return name in ran


async def test_priority_bounds_and_required_flags_split_jobs_between_lane_workers(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    # The three fetch filters the backfill layer's Fast, Bulk and custom lanes use: together they take every
    # job exactly once, whatever its priority and flags.
    await add_job(pool, "known", {"name": "fast"}, priority=-1)
    await add_job(pool, "known", {"name": "urgent"}, priority=-20)
    await add_job(pool, "known", {"name": "bulk"}, priority=0)
    await add_job(pool, "known", {"name": "slow"}, priority=10)
    await add_job(pool, "known", {"name": "report"}, priority=-5, flags=["backfill:lane", "backfill:lane=reports"])
    lanes = {
        "fast": fast_options(max_priority=-1, forbidden_flags=["backfill:lane"]),
        "bulk": fast_options(min_priority=0, forbidden_flags=["backfill:lane"]),
        "reports": fast_options(required_flags=["backfill:lane=reports"]),
    }
    ran_by: dict[str, list[str]] = {}
    for lane, options in lanes.items():
        ran_by[lane] = []
        await Worker(database_url, tasks=recording_registry(ran_by[lane]), options=options).run_once()

    assert {lane: sorted(names) for lane, names in ran_by.items()} == {
        "fast": ["fast", "urgent"],
        "bulk": ["bulk", "slow"],
        "reports": ["report"],
    }


async def test_a_bounded_worker_leaves_other_priorities_untouched(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ran: list[str] = []
    outside = await add_job(pool, "known", {"name": "outside"}, priority=3)
    await add_job(pool, "known", {"name": "inside"}, priority=2)
    summary = await Worker(
        database_url, tasks=recording_registry(ran), options=fast_options(min_priority=-2, max_priority=2)
    ).run_once()
    assert ran == ["inside"]
    assert summary.processed == 1
    row = await job_row(conn, outside.id)
    assert row is not None and (row["attempts"], row["locked_by"]) == (0, None)
