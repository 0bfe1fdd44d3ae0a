"""Requeue: by id and by filter, dry runs, overrides, job keys, and what happens to the entry when the new job
succeeds (deleted) or dies again (back to the same entry, every error kept)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.errors import ConfigurationError
from backfill.dlq import DeadLetterFilter, DeadLetterMover, DeadLetterQueue, EntryState, Skipped
from tests.integration.test_dlq_support import (
    DLQ,
    JOBS,
    SCHEMA,
    add,
    entries,
    installed,
    job_exists,
    make_dead,
    run_worker,
)


@pytest.fixture
async def dlq_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return await installed(pool)


async def move(pool: asyncpg.Pool[Any]) -> int:
    return await DeadLetterMover(pool, SCHEMA).move_now()


async def entry_of(pool: asyncpg.Pool[Any], job_id: int) -> int:
    return int(await pool.fetchval(f"select id from {DLQ} where job_id = $1::bigint", job_id))


async def snapshot(pool: asyncpg.Pool[Any]) -> tuple[list[Any], list[Any]]:
    jobs = await pool.fetch(f"select id, key, revision, payload::text from {JOBS} order by id")
    dlq = await pool.fetch(f"select id, state, requeue_count, requeued_job_id, notes from {DLQ} order by id")
    return [tuple(row) for row in jobs], [tuple(row) for row in dlq]


async def test_requeue_by_id_makes_the_job_again_with_overrides(dlq_pool: asyncpg.Pool[Any]) -> None:
    dead = await make_dead(
        dlq_pool,
        "mail",
        ["a", "b"],
        payload='{"to":  "a@example.com"}',
        queue_name="emails",
        priority=4,
        flags=["keep", "backfill:suspect", "backfill:timeout=30"],
    )
    await move(dlq_pool)
    entry_id = await entry_of(dlq_pool, dead)
    later = datetime.now(UTC) + timedelta(hours=1)

    async with DeadLetterQueue(dlq_pool) as dlq:
        before = await snapshot(dlq_pool)
        preview = await dlq.requeue([entry_id], dry_run=True, priority=-3)
        assert await snapshot(dlq_pool) == before  # a dry run changes nothing
        assert [(r.entry_id, r.job_id, r.priority) for r in preview.requeued] == [(entry_id, None, -3)]

        result = await dlq.requeue(
            [entry_id, 424242], priority=-3, run_at=later, max_attempts=9, note="SMTP fixed, INC-42"
        )
        again = await dlq.requeue([entry_id])
        entry = await dlq.get(entry_id)

    [requeued] = result.requeued
    assert result.skipped == (Skipped(424242, "no such entry"),)
    job = await dlq_pool.fetchrow(
        f"""select j.*, j.payload::text as payload_text, t.identifier, q.queue_name from {JOBS} as j
              join graphile_worker._private_tasks as t on t.id = j.task_id
              left join graphile_worker._private_job_queues as q on q.id = j.job_queue_id
             where j.id = $1::bigint""",
        requeued.job_id,
    )
    assert job is not None
    assert (job["identifier"], job["payload_text"], job["queue_name"]) == ("mail", '{"to":  "a@example.com"}', "emails")
    assert (job["priority"], job["max_attempts"], job["attempts"], job["run_at"]) == (-3, 9, 0, later)
    assert set(json.loads(job["flags"])) == {"keep", "backfill:timeout=30", f"backfill:dlq={entry_id}"}

    assert entry is not None
    assert (entry.state, entry.requeue_count, entry.requeued_job_id) == (EntryState.REQUEUED, 1, requeued.job_id)
    assert entry.requeued_at is not None and entry.notes is not None and entry.notes.endswith("SMTP fixed, INC-42")
    assert again.requeued == ()
    assert again.skipped == (Skipped(entry_id, f"already requeued as job {requeued.job_id}"),)


async def test_requeue_by_filter_needs_all_for_an_empty_one(dlq_pool: asyncpg.Pool[Any]) -> None:
    mail = [await make_dead(dlq_pool, "mail") for _ in range(2)]
    sms = await make_dead(dlq_pool, "sms")
    await move(dlq_pool)

    async with DeadLetterQueue(dlq_pool) as dlq:
        with pytest.raises(ConfigurationError, match="all=True"):
            await dlq.requeue()
        with pytest.raises(ConfigurationError, match="max_attempts"):
            await dlq.requeue(filter=DeadLetterFilter(task="mail"), max_attempts=0)
        assert len((await dlq.requeue(dry_run=True)).requeued) == 3  # a preview needs no all=True
        by_task = await dlq.requeue(filter=DeadLetterFilter(task="mail"))
        rest = await dlq.requeue(all=True)  # only the entries still dead

    assert sorted(r.entry_id for r in by_task.requeued) == sorted([await entry_of(dlq_pool, j) for j in mail])
    assert [r.entry_id for r in rest.requeued] == [await entry_of(dlq_pool, sms)]
    assert all(entry.state == EntryState.REQUEUED for entry in await entries(dlq_pool))


async def test_a_keyed_entry_never_clobbers_a_newer_job_with_its_key(dlq_pool: asyncpg.Pool[Any]) -> None:
    taken = await make_dead(dlq_pool, "sync", payload='{"v": 1}', job_key="user-7")
    free = await make_dead(dlq_pool, "sync", payload='{"v": 1}', job_key="user-8")
    await move(dlq_pool)
    newer = await add(dlq_pool, "sync", '{"v": 2}', job_key="user-7")  # the application enqueued it again
    before = await dlq_pool.fetchrow(f"select payload::text, revision, updated_at from {JOBS} where id = $1", newer)

    async with DeadLetterQueue(dlq_pool) as dlq:
        result = await dlq.requeue(all=True)

    taken_entry, free_entry = await entry_of(dlq_pool, taken), await entry_of(dlq_pool, free)
    assert result.skipped == (Skipped(taken_entry, f"job key 'user-7' is held by job {newer}"),)
    assert [(r.entry_id, r.job_key) for r in result.requeued] == [(free_entry, "user-8")]
    after = await dlq_pool.fetchrow(f"select payload::text, revision, updated_at from {JOBS} where id = $1", newer)
    assert after == before  # untouched: not even its revision moved
    states = {entry.id: entry.state for entry in await entries(dlq_pool)}
    assert states == {taken_entry: EntryState.DEAD, free_entry: EntryState.REQUEUED}


async def test_a_requeued_job_that_succeeds_leaves_no_entry_and_one_that_dies_goes_back(
    database_url: str, dlq_pool: asyncpg.Pool[Any]
) -> None:
    fixed = await make_dead(dlq_pool, "ok", ["was broken"])
    broken = await make_dead(dlq_pool, "explode", ["old 1", "old 2"])
    await move(dlq_pool)
    fixed_entry, broken_entry = await entry_of(dlq_pool, fixed), await entry_of(dlq_pool, broken)
    async with DeadLetterQueue(dlq_pool) as dlq:
        result = await dlq.requeue(all=True)
    new_job = {r.entry_id: r.job_id or 0 for r in result.requeued}  # job ids are set outside dry runs

    # A real worker runs both; the mover hears of the success and of the final failure from its events.
    await run_worker(database_url, DeadLetterMover(dlq_pool, SCHEMA))

    [entry] = await entries(dlq_pool)
    assert entry.id == broken_entry and fixed_entry != broken_entry
    assert (entry.state, entry.requeued_job_id, entry.requeue_count, entry.job_id) == (
        EntryState.DEAD,
        None,
        1,
        broken,
    )
    assert [(e.job_id, e.attempt, e.error) for e in entry.errors] == [
        (broken, 1, "old 1"),
        (broken, 2, "old 2"),
        (new_job[broken_entry], 1, "RuntimeError: boom on attempt 1"),
        (new_job[broken_entry], 2, "RuntimeError: boom on attempt 2"),
    ]
    assert entry.flags == frozenset()  # the backfill:dlq flag is the entry's own id, not kept
    assert not await job_exists(dlq_pool, new_job[broken_entry])

    async with DeadLetterQueue(dlq_pool) as dlq:
        await dlq.requeue([broken_entry])
        again = await dlq.get(broken_entry)
    assert again is not None and again.requeue_count == 2


async def test_a_requeue_finished_elsewhere_is_forgotten_by_the_full_pass(dlq_pool: asyncpg.Pool[Any]) -> None:
    done = await make_dead(dlq_pool, "mail")
    waiting = await make_dead(dlq_pool, "mail")
    await move(dlq_pool)
    async with DeadLetterQueue(dlq_pool) as dlq:
        result = await dlq.requeue(all=True)
    new_job = {r.entry_id: r.job_id or 0 for r in result.requeued}  # job ids are set outside dry runs
    done_entry = await entry_of(dlq_pool, done)
    # Completed by a Node worker: no event reaches any mover.
    await dlq_pool.execute("select graphile_worker.complete_jobs(array[$1::bigint])", new_job[done_entry])

    async with DeadLetterQueue(dlq_pool) as dlq:
        assert await dlq.move_now() == 0

    assert [entry.id for entry in await entries(dlq_pool)] == [await entry_of(dlq_pool, waiting)]
