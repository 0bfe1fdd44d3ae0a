"""The administrative SQL functions, and the four-hour lease they respect."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from tests.support.waiting import listening

JOBS = "graphile_worker._private_jobs"
QUEUES = "graphile_worker._private_job_queues"
RUN_AT = datetime(2033, 3, 3, tzinfo=UTC)


async def _make_jobs(conn: asyncpg.Connection[Any]) -> dict[str, int]:
    """Three jobs: waiting, locked a minute ago (running), locked five hours ago (its worker is presumed dead)."""
    ids = {
        name: (await add_job(conn, "t", {"name": name}, job_key=name)).id for name in ("waiting", "running", "stale")
    }
    await conn.execute(
        f"update {JOBS} set locked_at = now() - interval '1 minute', locked_by = 'w1', attempts = 1 where id = $1",
        ids["running"],
    )
    await conn.execute(
        f"update {JOBS} set locked_at = now() - interval '5 hours', locked_by = 'w0', attempts = 1 where id = $1",
        ids["stale"],
    )
    return ids


def _ids(rows: list[asyncpg.Record]) -> set[int]:
    return {row["id"] for row in rows}


async def _remaining(conn: asyncpg.Connection[Any]) -> set[int]:
    return {row["id"] for row in await conn.fetch(f"select id from {JOBS}")}


async def test_complete_jobs_deletes_all_but_recently_locked(conn: asyncpg.Connection[Any]) -> None:
    ids = await _make_jobs(conn)
    returned = await conn.fetch("select * from graphile_worker.complete_jobs($1::bigint[])", list(ids.values()))
    assert _ids(returned) == {ids["waiting"], ids["stale"]}
    assert await _remaining(conn) == {ids["running"]}


async def test_permanently_fail_jobs_default_and_custom_message(conn: asyncpg.Connection[Any]) -> None:
    ids = await _make_jobs(conn)
    returned = await conn.fetch("select * from graphile_worker.permanently_fail_jobs($1::bigint[])", list(ids.values()))
    assert _ids(returned) == {ids["waiting"], ids["stale"]}
    rows = {r["id"]: r for r in await conn.fetch(f"select * from {JOBS}")}
    for name in ("waiting", "stale"):
        assert (rows[ids[name]]["attempts"], rows[ids[name]]["last_error"]) == (25, "Manually marked as failed")
    assert (rows[ids["running"]]["attempts"], rows[ids["running"]]["last_error"]) == (1, None)

    await conn.fetch(
        "select * from graphile_worker.permanently_fail_jobs($1::bigint[], 'customer deleted')", [ids["waiting"]]
    )
    assert await conn.fetchval(f"select last_error from {JOBS} where id = $1", ids["waiting"]) == "customer deleted"
    # Failed jobs stay in the table (Graphile keeps them for inspection) and are never fetched again.
    assert await conn.fetchval(f"select is_available from {JOBS} where id = $1", ids["waiting"]) is False


async def test_reschedule_jobs_sets_given_fields_and_keeps_the_rest(conn: asyncpg.Connection[Any]) -> None:
    ids = await _make_jobs(conn)
    returned = await conn.fetch(
        "select * from graphile_worker.reschedule_jobs($1::bigint[], run_at => $2, priority => 4, attempts => 0, "
        "max_attempts => 9)",
        list(ids.values()),
        RUN_AT,
    )
    assert _ids(returned) == {ids["waiting"], ids["stale"]}
    rows = {r["id"]: r for r in await conn.fetch(f"select * from {JOBS}")}
    for name in ("waiting", "stale"):
        row = rows[ids[name]]
        assert (row["run_at"], row["priority"], row["attempts"], row["max_attempts"]) == (RUN_AT, 4, 0, 9)
    assert (rows[ids["running"]]["priority"], rows[ids["running"]]["max_attempts"]) == (0, 25)

    before = await conn.fetchrow(f"select * from {JOBS} where id = $1", ids["waiting"])
    assert before is not None
    await conn.fetch("select * from graphile_worker.reschedule_jobs($1::bigint[], priority => -2)", [ids["waiting"]])
    after = await conn.fetchrow(f"select * from {JOBS} where id = $1", ids["waiting"])
    assert after is not None
    assert after["priority"] == -2
    assert (after["run_at"], after["attempts"], after["max_attempts"]) == (
        before["run_at"],
        before["attempts"],
        before["max_attempts"],
    )


async def test_remove_job_deletes_an_unlocked_job_and_notifies(
    conn: asyncpg.Connection[Any], database_url: str
) -> None:
    ids = await _make_jobs(conn)
    async with listening(database_url, "jobs:insert") as notifications:
        removed = await conn.fetchrow("select * from graphile_worker.remove_job('waiting')")
        payloads = await notifications.flush()
    assert removed is not None
    assert removed["id"] == ids["waiting"]
    assert ids["waiting"] not in await _remaining(conn)
    # Minus one: listening workers learn that nothing new arrived, and ignore it.
    assert [json.loads(p)["count"] for p in payloads] == [-1]


async def test_remove_job_on_a_stale_lock_deletes(conn: asyncpg.Connection[Any]) -> None:
    ids = await _make_jobs(conn)
    removed = await conn.fetchrow("select * from graphile_worker.remove_job('stale')")
    assert removed is not None
    assert removed["id"] == ids["stale"]
    assert ids["stale"] not in await _remaining(conn)


async def test_remove_job_on_a_running_job_disarms_it(conn: asyncpg.Connection[Any], database_url: str) -> None:
    ids = await _make_jobs(conn)
    async with listening(database_url, "jobs:insert") as notifications:
        disarmed = await conn.fetchrow("select * from graphile_worker.remove_job('running')")
        assert await notifications.flush() == []
    assert disarmed is not None
    row = await conn.fetchrow(f"select * from {JOBS} where id = $1", ids["running"])
    assert row is not None
    assert (row["key"], row["attempts"], row["max_attempts"], row["locked_by"]) == (None, 25, 25, "w1")
    assert (disarmed["id"], disarmed["key"]) == (ids["running"], None)
    # The key is free again for a new job.
    assert (await add_job(conn, "t", job_key="running")).id != ids["running"]


@pytest.mark.parametrize("key", ["nobody-has-this", None])
async def test_remove_job_with_an_unknown_or_null_key(conn: asyncpg.Connection[Any], key: str | None) -> None:
    ids = await _make_jobs(conn)
    removed = await conn.fetchrow("select (graphile_worker.remove_job($1::text)).id", key)
    assert removed is not None
    assert removed["id"] is None
    assert await _remaining(conn) == set(ids.values())


async def test_force_unlock_workers_releases_only_their_jobs_and_queues(conn: asyncpg.Connection[Any]) -> None:
    jobs = {w: (await add_job(conn, "t", queue_name=f"q-{w}")) for w in ("w1", "w2", "w3")}
    for worker, job in jobs.items():
        await conn.execute(f"update {JOBS} set locked_at = now(), locked_by = $2 where id = $1", job.id, worker)
        await conn.execute(
            f"update {QUEUES} set locked_at = now(), locked_by = $2 where id = $1", job.job_queue_id, worker
        )

    await conn.execute("select graphile_worker.force_unlock_workers($1::text[])", ["w1", "w2"])

    locked_jobs = await conn.fetch(f"select locked_by from {JOBS} where locked_at is not null")
    locked_queues = await conn.fetch(f"select locked_by from {QUEUES} where locked_at is not null")
    assert [r["locked_by"] for r in locked_jobs] == ["w3"]
    assert [r["locked_by"] for r in locked_queues] == ["w3"]
    released = await conn.fetchval(
        f"select bool_and(locked_by is null and is_available) from {JOBS} where id = any($1::bigint[])",
        [jobs["w1"].id, jobs["w2"].id],
    )
    assert released is True


async def test_functions_ignore_ids_that_do_not_exist(conn: asyncpg.Connection[Any]) -> None:
    for function in ("complete_jobs", "permanently_fail_jobs", "reschedule_jobs"):
        assert await conn.fetch(f"select * from graphile_worker.{function}($1::bigint[])", [987654321]) == []
