"""Job keys: replace (debounce), preserve_run_at (throttle), unsafe_dedupe, locked and failed keyed jobs."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job, add_jobs
from backfill.core.errors import DatabaseError, JobSpecError
from backfill.core.jobs import JobKeyMode, JobSpec
from tests.support.waiting import wait_for

JOBS = "graphile_worker._private_jobs"
T1 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
T3 = T1 + timedelta(hours=2)


async def _row(conn: asyncpg.Connection[Any], job_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select *, payload::text as payload_text from {JOBS} where id = $1", job_id
    )
    assert row is not None, f"job {job_id} is gone"
    return row


async def _fail_once(conn: asyncpg.Connection[Any], job_id: int) -> None:
    """What a worker leaves after one failed attempt: attempts 1, an error, unlocked."""
    await conn.execute(f"update {JOBS} set attempts = 1, last_error = 'boom' where id = $1", job_id)


async def _lock(conn: asyncpg.Connection[Any], job_id: int, worker: str = "worker-a") -> None:
    await conn.execute(
        f"update {JOBS} set locked_at = now(), locked_by = $2, attempts = attempts + 1 where id = $1", job_id, worker
    )


async def test_new_key_inserts(conn: asyncpg.Connection[Any]) -> None:
    job = await add_job(conn, "t", {"v": 1}, job_key="k")
    assert (job.key, job.revision) == ("k", 0)
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 1


async def test_replace_overwrites_the_waiting_job(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "t", {"v": 1}, job_key="k", run_at=T1, priority=5, queue_name="q1", flags=["a"])
    await _fail_once(conn, first.id)
    before = await _row(conn, first.id)

    second = await add_job(
        conn, "t2", {"v": 2}, job_key="k", run_at=T2, priority=3, queue_name="q2", max_attempts=4, flags=["b"]
    )
    row = await _row(conn, first.id)

    assert second.id == first.id
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 1
    assert row["payload_text"] == '{"v":2}'
    assert (row["run_at"], row["priority"], row["max_attempts"]) == (T2, 3, 4)
    assert json.loads(await conn.fetchval(f"select flags::text from {JOBS} where id = $1", first.id)) == {"b": True}
    view = await conn.fetchrow("select task_identifier, queue_name from graphile_worker.jobs where id = $1", first.id)
    assert view is not None
    assert (view["task_identifier"], view["queue_name"]) == ("t2", "q2")
    # A fresh start for the new job, and a visible sign that it changed.
    assert (row["attempts"], row["last_error"], row["revision"]) == (0, None, 1)
    assert row["updated_at"] >= before["updated_at"]
    assert (second.task_identifier, second.queue_name, second.revision) == ("t2", "q2", 1)


async def test_replace_is_the_default_mode(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "t", job_key="k", run_at=T1)
    explicit = await add_job(conn, "t", job_key="k", run_at=T2, job_key_mode=JobKeyMode.REPLACE)
    implicit = await add_job(conn, "t", job_key="k", run_at=T3)
    assert first.id == explicit.id == implicit.id
    assert (implicit.run_at, implicit.revision) == (T3, 2)


async def test_preserve_run_at_keeps_run_at_until_the_first_attempt(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "t", {"v": 1}, job_key="k", run_at=T1, job_key_mode="preserve_run_at")
    second = await add_job(conn, "t", {"v": 2}, job_key="k", run_at=T2, priority=9, job_key_mode="preserve_run_at")
    row = await _row(conn, first.id)
    assert second.id == first.id
    assert row["run_at"] == T1  # throttled: the earlier schedule stands
    assert (row["payload_text"], row["priority"], row["revision"]) == ('{"v":2}', 9, 1)
    assert second.run_at == T1

    # Once attempted, the job's run_at is its retry time, not the schedule being throttled: overwrite it.
    await _fail_once(conn, first.id)
    third = await add_job(conn, "t", {"v": 3}, job_key="k", run_at=T3, job_key_mode="preserve_run_at")
    row = await _row(conn, first.id)
    assert third.id == first.id
    assert (row["run_at"], row["payload_text"], row["attempts"], row["last_error"], row["revision"]) == (
        T3,
        '{"v":3}',
        0,
        None,
        2,
    )


async def test_add_jobs_preserve_run_at_flag(conn: asyncpg.Connection[Any]) -> None:
    [first] = await add_jobs(conn, [JobSpec("t", {"v": 1}, job_key="k", run_at=T1)])
    [kept] = await add_jobs(conn, [JobSpec("t", {"v": 2}, job_key="k", run_at=T2)], job_key_preserve_run_at=True)
    [replaced] = await add_jobs(conn, [JobSpec("t", {"v": 3}, job_key="k", run_at=T3)])
    assert first.id == kept.id == replaced.id
    assert (kept.run_at, kept.payload) == (T1, {"v": 2})
    assert (replaced.run_at, replaced.payload) == (T3, {"v": 3})


async def test_unsafe_dedupe_keeps_the_existing_job(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "t", {"v": 1}, job_key="k", run_at=T1, priority=5, queue_name="q1")
    await _fail_once(conn, first.id)
    before = await _row(conn, first.id)

    again = await add_job(
        conn, "other", {"v": 2}, job_key="k", run_at=T2, priority=1, queue_name="q2", job_key_mode="unsafe_dedupe"
    )
    after = await _row(conn, first.id)

    assert again.id == first.id
    assert after["revision"] == before["revision"] + 1
    unchanged = ("payload_text", "run_at", "priority", "attempts", "last_error", "task_id", "job_queue_id", "key")
    assert {c: after[c] for c in unchanged} == {c: before[c] for c in unchanged}
    # The Job handed back describes the row as it is, not the spec that was ignored.
    assert (again.task_identifier, again.queue_name, again.payload, again.revision) == ("t", "q1", {"v": 1}, 1)


async def test_unsafe_dedupe_keeps_even_a_running_job(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "t", {"v": 1}, job_key="k")
    await _lock(conn, first.id)
    again = await add_job(conn, "t", {"v": 2}, job_key="k", job_key_mode="unsafe_dedupe")
    assert again.id == first.id
    assert again.locked_by == "worker-a"
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 1


async def test_unsafe_dedupe_with_a_new_key_inserts(conn: asyncpg.Connection[Any]) -> None:
    job = await add_job(conn, "t", {"v": 1}, job_key="k", queue_name="q", job_key_mode="unsafe_dedupe")
    assert (job.revision, job.key, job.queue_name, job.payload) == (0, "k", "q", {"v": 1})


@pytest.mark.parametrize("mode", ["replace", "preserve_run_at"])
async def test_locked_keyed_job_loses_its_key_and_a_new_job_is_inserted(
    conn: asyncpg.Connection[Any], mode: str
) -> None:
    running = await add_job(conn, "t", {"v": 1}, job_key="k", max_attempts=7)
    await _lock(conn, running.id)

    new = await add_job(conn, "t", {"v": 2}, job_key="k", job_key_mode=mode)
    old = await _row(conn, running.id)

    assert new.id != running.id
    assert (new.key, new.payload, new.revision, new.attempts) == ("k", {"v": 2}, 0, 0)
    # The running job describes an out-of-date world: it keeps running but will never be retried.
    assert (old["key"], old["attempts"], old["max_attempts"]) == (None, 7, 7)
    assert (old["locked_by"], old["payload_text"]) == ("worker-a", '{"v":1}')


async def test_permanently_failed_keyed_job_loses_its_key_too(conn: asyncpg.Connection[Any]) -> None:
    failed = await add_job(conn, "t", {"v": 1}, job_key="k", max_attempts=2)
    await conn.execute(f"update {JOBS} set attempts = 2, last_error = 'dead' where id = $1", failed.id)

    new = await add_job(conn, "t", {"v": 2}, job_key="k")
    old = await _row(conn, failed.id)
    assert new.id != failed.id
    assert new.key == "k"
    assert (old["key"], old["attempts"], old["last_error"]) == (None, 2, "dead")


async def test_array_payloads_under_one_key_concatenate(conn: asyncpg.Connection[Any]) -> None:
    first = await add_job(conn, "batch", [{"id": 1}, {"id": 2}], job_key="b")
    second = await add_job(conn, "batch", [{"id": 3}], job_key="b")
    assert second.id == first.id
    assert second.payload == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert json.loads((await _row(conn, first.id))["payload_text"]) == [{"id": 1}, {"id": 2}, {"id": 3}]

    # An object on either side is not a batch: the new payload wins.
    third = await add_job(conn, "batch", {"reset": True}, job_key="b")
    assert third.payload == {"reset": True}
    fourth = await add_job(conn, "batch", [{"id": 4}], job_key="b")
    assert fourth.payload == [{"id": 4}]


async def test_invalid_mode_from_python_names_the_field(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(JobSpecError) as caught:
        await add_job(conn, "t", job_key="k", job_key_mode="debounce")
    assert caught.value.field == "job_key_mode"
    assert "replace" in str(caught.value)
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_invalid_mode_from_sql_raises_gwbkm(conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(asyncpg.PostgresError) as caught:
        await conn.execute("select graphile_worker.add_job('t', job_key => 'k', job_key_mode => 'debounce')")
    assert caught.value.sqlstate == "GWBKM"
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_keyed_job_locked_mid_upsert_is_reported_not_lost(
    conn: asyncpg.Connection[Any], database_url: str
) -> None:
    """A worker that locks the keyed job while add_job runs leaves nothing to write: say so, loudly."""
    waiting = await add_job(conn, "t", {"v": 1}, job_key="k")
    worker = await asyncpg.connect(database_url)
    observer = await asyncpg.connect(database_url)
    try:
        claim = worker.transaction()
        await claim.start()
        await _lock(worker, waiting.id)  # not committed yet: add_job still sees the job as waiting

        caller = await asyncpg.connect(database_url)
        try:
            caller_pid = caller.get_server_pid()
            enqueue = asyncio.create_task(add_job(caller, "t", {"v": 2}, job_key="k"))

            async def blocked_on_the_key() -> bool:
                return bool(
                    await observer.fetchval(
                        "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", caller_pid
                    )
                )

            await wait_for(blocked_on_the_key, message="add_job waiting for the worker's row lock")
            await claim.commit()
            with pytest.raises(DatabaseError, match="busy"):
                await enqueue
        finally:
            await caller.close()
    finally:
        await asyncio.gather(worker.close(), observer.close())
    row = await _row(conn, waiting.id)
    assert (row["payload_text"], row["locked_by"], row["key"]) == ('{"v":1}', "worker-a", "k")
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 1


async def test_one_key_twice_in_a_batch_is_refused_naming_the_spec(conn: asyncpg.Connection[Any]) -> None:
    # PostgreSQL cannot upsert one row twice in a statement; the batch is refused whole, before it is sent,
    # with the repeating spec named.
    specs = [JobSpec("t", {"n": 1}), JobSpec("t", {"n": 2}, job_key="dup"), JobSpec("t", {"n": 3}, job_key="dup")]
    with pytest.raises(JobSpecError) as caught:
        await add_jobs(conn, specs)
    assert caught.value.field == "specs[2].job_key"
    assert "specs[1]" in str(caught.value)
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0
