"""Telling a poison pill from its company: a job found in a second dead worker is flagged as a suspect and run
alone by the next backfill worker that claims it, so only deaths it alone can have caused count against it.

The deaths are staged in SQL (a registered worker with a stale heartbeat holding the jobs), as the sweeper
would find them after a SIGKILL; the chaos suite does the same with real processes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.jobs import SUSPECT_FLAG
from backfill.core.migrations.own import migrate_own
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.core.upkeep.sweeper import sweep
from tests.integration.worker_support.helpers import fast_options, running
from tests.support.waiting import wait_for, wait_for_event

SCHEMA = SchemaName("graphile_worker")
JOBS = "graphile_worker._private_jobs"
WORKERS = "graphile_worker.backfill_workers"


@pytest.fixture
async def own_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await migrate_own(pool, SCHEMA)
    return pool


async def die_holding(conn: asyncpg.Connection[Any], worker_id: str, job_ids: list[int]) -> None:
    """Stage a worker that claimed ``job_ids`` and died (its heartbeat is an hour old)."""
    await conn.execute(
        f"insert into {WORKERS} (worker_id, hostname, pid, last_heartbeat_at, dead_after)"
        " values ($1, 'host', 1, now() - interval '1 hour', interval '10 seconds')",
        worker_id,
    )
    await conn.execute(
        f"update {JOBS} set locked_by = $1, locked_at = now(), attempts = attempts + 1 where id = any($2::bigint[])",
        worker_id,
        job_ids,
    )


async def flags_of(conn: asyncpg.Connection[Any], job_id: int) -> dict[str, Any]:
    flags = await conn.fetchval(f"select flags from {JOBS} where id = $1", job_id)
    return {} if flags is None else dict(json.loads(flags))


async def test_a_job_becomes_a_suspect_on_its_second_death_not_its_first(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(own_pool, "t", flags=["keep-me"])
    await die_holding(conn, "dead-1", [job.id])
    await sweep(own_pool, SCHEMA)
    assert await flags_of(conn, job.id) == {"keep-me": True}

    await die_holding(conn, "dead-2", [job.id])
    await sweep(own_pool, SCHEMA)
    assert await flags_of(conn, job.id) == {"keep-me": True, SUSPECT_FLAG: True}


async def test_with_max_recoveries_1_the_first_death_already_isolates(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(own_pool, "t")
    await die_holding(conn, "dead-1", [job.id])
    await sweep(own_pool, SCHEMA, max_recoveries=1)
    assert await flags_of(conn, job.id) == {SUSPECT_FLAG: True}


async def test_a_suspect_runs_alone_and_other_claimed_jobs_are_handed_back(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], database_url: str
) -> None:
    # The suspect has the best priority so that it is claimed in the same batch as the others.
    suspect = await add_job(own_pool, "record", {"name": "suspect"}, priority=-10, flags=[SUSPECT_FLAG])
    others = [await add_job(own_pool, "record", {"name": f"other-{i}"}) for i in range(5)]
    release_suspect = asyncio.Event()
    suspect_started = asyncio.Event()
    concurrent_with_suspect: list[str] = []
    running_names: set[str] = set()
    order: list[str] = []
    registry = TaskRegistry()

    @registry.task("record")
    async def record(payload: dict[str, str]) -> None:
        name = payload["name"]
        order.append(name)
        if "suspect" in running_names or (name == "suspect" and running_names):
            concurrent_with_suspect.append(name)
        running_names.add(name)
        try:
            if name == "suspect":
                suspect_started.set()
                await release_suspect.wait()
        finally:
            running_names.discard(name)

    worker = Worker(database_url, tasks=registry, options=fast_options(concurrency=4))
    async with running(worker):
        await wait_for_event(suspect_started, message="the suspect started")
        # While it runs, the others wait unlocked in the database, attempts refunded.
        rows = await conn.fetch(
            f"select locked_by, attempts from {JOBS} where id = any($1::bigint[])", [j.id for j in others]
        )
        assert [(row["locked_by"], row["attempts"]) for row in rows] == [(None, 0)] * len(others)
        release_suspect.set()

        async def all_ran() -> bool:
            return len(order) == 6

        await wait_for(all_ran, message="every job ran")
    assert order[0] == "suspect"
    assert concurrent_with_suspect == []
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0
    assert worker.summary.returned == 0  # handing back at isolation is not a shutdown return
    assert suspect.id not in {j.id for j in others}


async def test_a_suspect_that_fails_normally_is_cleared_of_suspicion(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], database_url: str
) -> None:
    job = await add_job(own_pool, "boom", flags=[SUSPECT_FLAG, "other"], max_attempts=3)
    registry = TaskRegistry()

    @registry.task("boom")
    async def boom(payload: Any) -> None:
        raise RuntimeError("an ordinary failure")

    await Worker(database_url, tasks=registry, options=fast_options()).run_once()
    row = await conn.fetchrow(f"select attempts, last_error from {JOBS} where id = $1", job.id)
    assert row is not None and (row["attempts"], row["last_error"]) == (1, "RuntimeError: an ordinary failure")
    assert await flags_of(conn, job.id) == {"other": True}


async def test_both_become_suspects_after_two_shared_deaths_and_the_poison_alone_is_failed_at_its_fourth(
    own_pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    """The sweeper's side of the scenario isolation exists for, with max_recoveries=3: poison and innocent die
    together twice; the innocent, run alone, then finishes (staged here by deleting it, as a completion does),
    while the poison dies alone twice more and only then is failed. The chaos suite runs it with processes."""
    poison = await add_job(own_pool, "t", {"name": "poison"})
    innocent = await add_job(own_pool, "t", {"name": "innocent"})
    for death in (1, 2):  # side by side, before anyone is a suspect
        await die_holding(conn, f"dead-{death}", [poison.id, innocent.id])
        await sweep(own_pool, SCHEMA, max_recoveries=3)
    assert SUSPECT_FLAG in await flags_of(conn, poison.id)
    assert SUSPECT_FLAG in await flags_of(conn, innocent.id)
    # Run alone now: the innocent completes (deleted), the poison keeps killing its lone worker.
    await conn.execute(f"delete from {JOBS} where id = $1", innocent.id)
    for death in (3, 4):
        await die_holding(conn, f"dead-{death}", [poison.id])
        report = await sweep(own_pool, SCHEMA, max_recoveries=3)
    assert report.poisoned_jobs == [poison.id]
    assert await conn.fetchval(f"select attempts = max_attempts from {JOBS} where id = $1", poison.id)
