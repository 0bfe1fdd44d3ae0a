"""The move into the dead-letter queue: from a real worker's failures (events), from Node's (the sweep), in
batches, and never a job that is still running."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from backfill.dlq import DeadLetterMover, EntryState, Reason
from backfill.dlq.move import MOVE_BATCH
from tests.integration.test_dlq_support import (
    ERRORS,
    JOBS,
    SCHEMA,
    MovedLog,
    add,
    entries,
    installed,
    job_exists,
    run_worker,
    wait_for_entries,
)


@pytest.fixture
async def dlq_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return await installed(pool)


async def test_a_job_a_worker_failed_for_good_lands_with_every_error_in_order(
    database_url: str, dlq_pool: asyncpg.Pool[Any]
) -> None:
    job_id = await add(
        dlq_pool,
        "explode",
        '{"order":  42}',
        queue_name="serial",
        priority=-5,
        max_attempts=3,
        job_key="order-42",
        flags=["tag", "eu"],
    )
    log = MovedLog()
    mover = DeadLetterMover(dlq_pool, SCHEMA, on_moved=log)

    summary = await run_worker(database_url, mover)  # no run(): only the worker's event moves it

    assert (summary.failed, summary.permanently_failed) == (3, 1)
    [entry] = await entries(dlq_pool)
    assert (entry.job_id, entry.task_identifier, entry.queue_name, entry.priority, entry.job_key) == (
        job_id,
        "explode",
        "serial",
        -5,
        "order-42",
    )
    assert entry.payload == {"order": 42}
    assert await dlq_pool.fetchval("select payload::text from graphile_worker.backfill_dlq") == '{"order":  42}'
    assert entry.flags == {"tag", "eu"}
    assert (entry.attempts, entry.max_attempts, entry.reason, entry.state) == (
        3,
        3,
        Reason.ATTEMPTS_EXHAUSTED,
        EntryState.DEAD,
    )
    assert [(e.attempt, e.error, e.permanent, e.job_id, e.exception_type) for e in entry.errors] == [
        (1, "RuntimeError: boom on attempt 1", False, job_id, "RuntimeError"),
        (2, "RuntimeError: boom on attempt 2", False, job_id, "RuntimeError"),
        (3, "RuntimeError: boom on attempt 3", False, job_id, "RuntimeError"),
    ]
    # The last attempt's type and traceback, as Python prints it: the handler's line, the message, and no
    # payload value (the handler did not put one into its message).
    assert entry.exception_type == "RuntimeError"
    assert entry.traceback is not None
    assert entry.traceback.startswith("Traceback (most recent call last):")
    assert 'raise RuntimeError(f"boom on attempt {ctx.attempt}")' in entry.traceback
    assert entry.traceback.endswith("RuntimeError: boom on attempt 3\n")
    assert "42" not in entry.traceback
    times = [e.failed_at for e in entry.errors]
    assert all(t is not None for t in times) and times == sorted(times)  # type: ignore[type-var]
    assert entry.failed_at == times[-1]
    assert entry.last_error == entry.errors[-1].error
    assert not await job_exists(dlq_pool, job_id)
    assert await dlq_pool.fetchval(f"select count(*) from {ERRORS} where job_id = $1", job_id) == 0
    [moved] = log.moved
    assert (moved.job_id, moved.entry_id, moved.task_identifier, moved.priority, moved.returned) == (
        job_id,
        entry.id,
        "explode",
        -5,
        False,
    )
    assert moved.flags == {"tag", "eu"}


async def test_a_permanent_failure_lands_after_one_attempt_as_permanent(
    database_url: str, dlq_pool: asyncpg.Pool[Any]
) -> None:
    job_id = await add(dlq_pool, "fatal", max_attempts=25)

    await run_worker(database_url, DeadLetterMover(dlq_pool, SCHEMA))

    [entry] = await entries(dlq_pool)
    # One attempt ran, though the permanent failure set the row's attempts to the maximum: the entry (and
    # `dlq list`, which shows attempts/max_attempts) says 1 of 25, not 25 of 25.
    assert (entry.job_id, entry.reason, entry.attempts, entry.max_attempts) == (
        job_id,
        Reason.PERMANENT_FAILURE,
        1,
        25,
    )
    # The history names the attempt that ran (the first), though the row's attempts jumped to the maximum.
    assert [(e.attempt, e.permanent) for e in entry.errors] == [(1, True)]
    assert entry.errors[0].error == "bad input, never retry"


async def test_jobs_node_failed_are_swept_in_with_their_last_error(dlq_pool: asyncpg.Pool[Any]) -> None:
    # Failed for good through Graphile's own SQL, as a Node worker or Node's utilities would: no history rows.
    node_only = await add(dlq_pool, "mail", '{"to": "a@example.com"}')
    await dlq_pool.execute("select graphile_worker.permanently_fail_jobs(array[$1::bigint], 'smtp said no')", node_only)
    # A first attempt failed by backfill (its history row), the last one by Node (only the job row knows).
    mixed = await add(dlq_pool, "mail", max_attempts=2)
    await dlq_pool.execute(
        f"""
        with failed as (update {JOBS} set attempts = 1, last_error = 'first, by backfill' where id = $1 returning id)
        insert into {ERRORS} (job_id, attempt, error) select id, 1, 'first, by backfill' from failed
        """,
        mixed,
    )
    await dlq_pool.execute(f"update {JOBS} set attempts = 2, last_error = 'second, by node' where id = $1", mixed)
    untouched = await add(dlq_pool, "mail")

    moved = await DeadLetterMover(dlq_pool, SCHEMA).move_now()

    assert moved == 2
    first, second = await entries(dlq_pool)
    assert (first.job_id, first.last_error, first.reason, first.attempts) == (
        node_only,
        "smtp said no",
        Reason.ATTEMPTS_EXHAUSTED,
        25,
    )
    assert [(e.attempt, e.error, e.permanent) for e in first.errors] == [(25, "smtp said no", None)]
    assert first.errors[0].failed_at is not None
    assert [(e.attempt, e.error, e.permanent) for e in second.errors] == [
        (1, "first, by backfill", False),
        (2, "second, by node", None),
    ]
    assert second.errors[0].failed_at <= second.errors[1].failed_at  # type: ignore[operator]
    assert await job_exists(dlq_pool, untouched)
    assert not await job_exists(dlq_pool, node_only) and not await job_exists(dlq_pool, mixed)


async def test_a_running_job_with_no_attempts_left_is_not_moved(dlq_pool: asyncpg.Pool[Any]) -> None:
    # add_job with the key of a running job (or remove_job) spends its attempts while it runs.
    job_id = await add(dlq_pool, "mail", max_attempts=3)
    await dlq_pool.execute(
        f"update {JOBS} set attempts = 3, locked_at = now(), locked_by = 'busy-worker' where id = $1", job_id
    )
    mover = DeadLetterMover(dlq_pool, SCHEMA)

    assert await mover.move_now() == 0
    assert await job_exists(dlq_pool, job_id) and await entries(dlq_pool) == []

    await dlq_pool.execute(f"update {JOBS} set locked_at = null, locked_by = null where id = $1", job_id)
    assert await mover.move_now() == 1
    assert [entry.job_id for entry in await entries(dlq_pool)] == [job_id]


async def test_a_backlog_moves_in_batches_and_the_periodic_pass_finds_it(dlq_pool: asyncpg.Pool[Any]) -> None:
    count = 2 * MOVE_BATCH + 7
    await dlq_pool.execute(
        f"""
        insert into graphile_worker._private_tasks (identifier) values ('bulk');
        insert into {JOBS} (task_id, attempts, max_attempts, last_error)
        select (select id from graphile_worker._private_tasks where identifier = 'bulk'), 1, 1, 'dead ' || n
          from generate_series(1, {count}) as n;
        """
    )
    log = MovedLog()
    mover = DeadLetterMover(dlq_pool, SCHEMA, interval=0.05, on_moved=log)

    running = asyncio.create_task(mover.run())
    try:
        await wait_for_entries(dlq_pool, count)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 0
    assert len(log.moved) == count and len({m.job_id for m in log.moved}) == count


async def test_dlq_flags_that_are_not_an_entry_id_or_name_a_missing_entry_get_a_new_entry(
    dlq_pool: asyncpg.Pool[Any],
) -> None:
    handwritten = await add(dlq_pool, "mail", flags=["backfill:dlq=not-a-number"])
    orphan = await add(dlq_pool, "mail", flags=["backfill:dlq=987654", "keep"])
    await dlq_pool.execute(
        "select graphile_worker.permanently_fail_jobs(array[$1::bigint, $2::bigint], 'gone')", handwritten, orphan
    )

    assert await DeadLetterMover(dlq_pool, SCHEMA).move_now() == 2

    first, second = await entries(dlq_pool)
    assert (first.job_id, first.flags) == (handwritten, frozenset({"backfill:dlq=not-a-number"}))
    assert (second.job_id, second.flags) == (
        orphan,
        frozenset({"keep"}),
    )  # its entry is gone: a new one, the flag dropped


async def test_a_move_that_fails_keeps_the_job(pool: asyncpg.Pool[Any]) -> None:
    # No dead-letter table: the statement fails, and its transaction takes the deletes with it.
    job_id = await add(pool, "mail")
    await pool.execute("select graphile_worker.permanently_fail_jobs(array[$1::bigint], 'x')", job_id)

    with pytest.raises(asyncpg.UndefinedTableError):
        await DeadLetterMover(pool, SCHEMA).move_now()

    assert await job_exists(pool, job_id)
