"""WorkerUtils against real PostgreSQL: each utility, each job state, the figures and the worker list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.core.admin.models import JobState
from backfill.core.admin.utils import WorkerUtils
from backfill.core.enqueue import add_job
from backfill.core.errors import ConfigurationError, DatabaseError, JobSpecError
from backfill.core.jobs import Job, JobSpec
from backfill.core.migrations.own import migrate_own
from backfill.core.schema import SchemaName
from tests.integration.worker_support.helpers import JOBS_TABLE, QUEUES_TABLE, job_count

TASKS_TABLE = "graphile_worker._private_tasks"
WORKERS_TABLE = "graphile_worker.backfill_workers"


@pytest.fixture
def utils(pool: asyncpg.Pool[Any]) -> WorkerUtils:
    return WorkerUtils(pool, schema="graphile_worker")


async def lock_job(conn: asyncpg.Connection[Any], job_id: int, worker_id: str) -> None:
    await conn.execute(f"update {JOBS_TABLE} set locked_at = now(), locked_by = $2 where id = $1", job_id, worker_id)


async def lock_queue(conn: asyncpg.Connection[Any], queue_name: str, worker_id: str) -> None:
    await conn.execute(
        f"update {QUEUES_TABLE} set locked_at = now(), locked_by = $2 where queue_name = $1", queue_name, worker_id
    )


async def make_retrying(conn: asyncpg.Connection[Any], job_id: int, *, due: bool = False) -> None:
    await conn.execute(
        f"update {JOBS_TABLE} set attempts = 1, last_error = 'boom',"
        f" run_at = now() + case when $2 then interval '-1 minute' else interval '1 hour' end where id = $1",
        job_id,
        due,
    )


async def make_failed(conn: asyncpg.Connection[Any], job_id: int) -> None:
    await conn.execute(f"update {JOBS_TABLE} set attempts = max_attempts, last_error = 'dead' where id = $1", job_id)


async def job_ids(conn: asyncpg.Connection[Any]) -> list[int]:
    return [row["id"] for row in await conn.fetch(f"select id from {JOBS_TABLE} order by id")]


# -- acting on jobs ---------------------------------------------------------------------------------------


async def test_complete_jobs_deletes_the_unlocked_ones_and_returns_them_with_names(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    free = await add_job(pool, "mail", {"to": "a"}, queue_name="q1")
    locked = await add_job(pool, "mail", {"to": "b"})
    await lock_job(conn, locked.id, "w1")

    done = await utils.complete_jobs([free.id, locked.id, 999_999])

    assert [(job.id, job.task_identifier, job.queue_name, job.payload) for job in done] == [
        (free.id, "mail", "q1", {"to": "a"})
    ]
    assert await job_ids(conn) == [locked.id]


async def test_permanently_fail_jobs_uses_the_reason_or_graphiles_default(
    utils: WorkerUtils, pool: asyncpg.Pool[Any]
) -> None:
    first = await add_job(pool, "mail", max_attempts=5)
    second = await add_job(pool, "mail")

    (failed,) = await utils.permanently_fail_jobs([first.id], "bad address")
    (defaulted,) = await utils.permanently_fail_jobs([second.id])

    assert (failed.attempts, failed.max_attempts, failed.last_error) == (5, 5, "bad address")
    assert defaulted.last_error == "Manually marked as failed"
    info = await utils.get_job(first.id)
    assert info is not None and info.state is JobState.FAILED


async def test_reschedule_jobs_changes_only_the_fields_given(utils: WorkerUtils, pool: asyncpg.Pool[Any]) -> None:
    job = await add_job(pool, "mail", priority=3, max_attempts=7)
    later = datetime.now(UTC) + timedelta(days=1)

    (moved,) = await utils.reschedule_jobs([job.id], run_at=later, attempts=2)

    assert moved.run_at == later
    assert (moved.priority, moved.attempts, moved.max_attempts) == (3, 2, 7)
    (again,) = await utils.reschedule_jobs([job.id], priority=-1, max_attempts=9)
    assert (again.run_at, again.priority, again.max_attempts) == (later, -1, 9)


async def test_reschedule_jobs_refuses_bad_values_naming_the_field(utils: WorkerUtils) -> None:
    with pytest.raises(JobSpecError, match="run_at"):
        await utils.reschedule_jobs([1], run_at=datetime(2030, 1, 1))  # naive
    with pytest.raises(JobSpecError, match="max_attempts"):
        await utils.reschedule_jobs([1], max_attempts=0)
    with pytest.raises(JobSpecError, match=r"ids\[1\]"):
        await utils.reschedule_jobs([1, "2"], priority=1)  # type: ignore[list-item]


async def test_remove_job_deletes_a_waiting_job_and_disarms_a_running_one(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    waiting = await add_job(pool, "mail", job_key="k-waiting")
    running = await add_job(pool, "mail", job_key="k-running")
    await lock_job(conn, running.id, "w1")

    removed = await utils.remove_job("k-waiting")
    disarmed = await utils.remove_job("k-running")

    assert removed is not None and removed.id == waiting.id and removed.task_identifier == "mail"
    assert disarmed is not None and disarmed.id == running.id
    assert disarmed.key is None and disarmed.attempts == disarmed.max_attempts
    assert await utils.remove_job("k-unknown") is None
    assert await job_ids(conn) == [running.id]


async def test_force_unlock_workers_releases_only_the_named_workers_locks(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    dead = await add_job(pool, "mail", queue_name="q-dead")
    alive = await add_job(pool, "mail", queue_name="q-alive")
    await lock_job(conn, dead.id, "dead-worker")
    await lock_queue(conn, "q-dead", "dead-worker")
    await lock_job(conn, alive.id, "live-worker")
    await lock_queue(conn, "q-alive", "live-worker")

    await utils.force_unlock_workers(["dead-worker"])

    jobs = await conn.fetch(f"select id, locked_by, locked_at from {JOBS_TABLE} order by id")
    queues = await conn.fetch(f"select queue_name, locked_by from {QUEUES_TABLE} order by queue_name")
    assert [(row["id"], row["locked_by"]) for row in jobs] == [(dead.id, None), (alive.id, "live-worker")]
    assert jobs[0]["locked_at"] is None
    assert [(row["queue_name"], row["locked_by"]) for row in queues] == [("q-alive", "live-worker"), ("q-dead", None)]


# -- cleanup ----------------------------------------------------------------------------------------------


async def test_cleanup_delete_permafailed_jobs_spares_locked_and_retryable_jobs(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    failed = await add_job(pool, "mail")
    failed_but_locked = await add_job(pool, "mail")
    retryable = await add_job(pool, "mail")
    await make_failed(conn, failed.id)
    await make_failed(conn, failed_but_locked.id)
    await lock_job(conn, failed_but_locked.id, "w1")
    await make_retrying(conn, retryable.id)

    report = await utils.cleanup(["DELETE_PERMAFAILED_JOBS"])

    assert (report.tasks, report.deleted_permafailed_jobs) == (("DELETE_PERMAFAILED_JOBS",), 1)
    assert (report.deleted_task_identifiers, report.deleted_job_queues) == (0, 0)
    assert await job_ids(conn) == [failed_but_locked.id, retryable.id]


async def test_cleanup_gc_task_identifiers_keeps_referenced_and_listed_tasks(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    for identifier in ("used", "unused", "kept"):
        job = await add_job(pool, identifier)
        if identifier != "used":
            await utils.complete_jobs([job.id])

    report = await utils.cleanup(["GC_TASK_IDENTIFIERS"], task_identifiers_to_keep=["kept"])

    assert report.deleted_task_identifiers == 1
    remaining = await conn.fetch(f"select identifier from {TASKS_TABLE} order by identifier")
    assert [row["identifier"] for row in remaining] == ["kept", "used"]


async def test_cleanup_gc_job_queues_keeps_referenced_and_locked_queues(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await add_job(pool, "mail", queue_name="used")
    for queue_name in ("empty", "empty-locked"):
        job = await add_job(pool, "mail", queue_name=queue_name)
        await utils.complete_jobs([job.id])
    await lock_queue(conn, "empty-locked", "w1")

    report = await utils.cleanup(["GC_JOB_QUEUES"])

    assert report.deleted_job_queues == 1
    remaining = await conn.fetch(f"select queue_name from {QUEUES_TABLE} order by queue_name")
    assert [row["queue_name"] for row in remaining] == ["empty-locked", "used"]


async def test_cleanup_by_default_collects_tasks_and_queues_but_keeps_failed_jobs(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    failed = await add_job(pool, "failing", queue_name="q-failing")
    await make_failed(conn, failed.id)
    done = await add_job(pool, "done", queue_name="q-done")
    await utils.complete_jobs([done.id])

    report = await utils.cleanup()

    assert report.tasks == ("GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS")
    assert (report.deleted_permafailed_jobs, report.deleted_task_identifiers, report.deleted_job_queues) == (0, 1, 1)
    assert await job_ids(conn) == [failed.id]


async def test_cleanup_of_everything_collects_what_only_failed_jobs_referenced(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    failed = await add_job(pool, "failing", queue_name="q-failing")
    await make_failed(conn, failed.id)

    report = await utils.cleanup(["GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"])

    assert (report.deleted_permafailed_jobs, report.deleted_task_identifiers, report.deleted_job_queues) == (1, 1, 1)
    assert await job_count(conn) == 0


async def test_cleanup_refuses_an_unknown_task_listing_the_known_ones(utils: WorkerUtils) -> None:
    with pytest.raises(ConfigurationError, match="GC_EVERYTHING") as caught:
        await utils.cleanup(["GC_JOB_QUEUES", "GC_EVERYTHING"])
    for known in ("GC_JOB_QUEUES", "GC_TASK_IDENTIFIERS", "DELETE_PERMAFAILED_JOBS"):
        assert known in str(caught.value)


# -- looking around ---------------------------------------------------------------------------------------


async def one_job_in_each_state(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> dict[JobState, Job]:
    jobs = {
        JobState.WAITING: await add_job(pool, "t", {"n": 1}),
        JobState.SCHEDULED: await add_job(pool, "t", run_at=datetime.now(UTC) + timedelta(hours=1)),
        JobState.RUNNING: await add_job(pool, "t"),
        JobState.RETRYING: await add_job(pool, "t"),
        JobState.FAILED: await add_job(pool, "t"),
    }
    await lock_job(conn, jobs[JobState.RUNNING].id, "w1")
    await make_retrying(conn, jobs[JobState.RETRYING].id)
    await make_failed(conn, jobs[JobState.FAILED].id)
    return jobs


async def test_each_state_is_derived_and_filtered_by_its_rule(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    jobs = await one_job_in_each_state(pool, conn)
    due_retry = await add_job(pool, "t")
    await make_retrying(conn, due_retry.id, due=True)  # a due retry is still "retrying", not "waiting"

    for state, job in jobs.items():
        info = await utils.get_job(job.id)
        assert info is not None and info.state is state, state
        listed = await utils.list_jobs(state=state)
        expected = [job.id, due_retry.id] if state is JobState.RETRYING else [job.id]
        assert [found.id for found in listed] == expected, state


async def test_get_job_returns_every_column_and_none_for_an_unknown_id(
    utils: WorkerUtils, pool: asyncpg.Pool[Any]
) -> None:
    job = await add_job(pool, "t", {"x": [1, 2]}, queue_name="q", job_key="k", priority=4, flags=["f1"])

    info = await utils.get_job(job.id)

    assert info is not None
    assert (info.task_identifier, info.queue_name, info.payload, info.key, info.priority) == (
        "t",
        "q",
        {"x": [1, 2]},
        "k",
        4,
    )
    assert (info.flags, info.is_available, info.attempts, info.max_attempts) == (frozenset({"f1"}), True, 0, 25)
    assert (info.task_id, info.job_queue_id, info.run_at) == (job.task_id, job.job_queue_id, job.run_at)
    assert await utils.get_job(job.id + 1000) is None


async def test_list_jobs_filters_by_task_queue_key_and_lock_owner(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    a = await add_job(pool, "alpha", queue_name="q1")
    b = await add_job(pool, "beta", queue_name="q1", job_key="bk")
    c = await add_job(pool, "alpha")
    await lock_job(conn, c.id, "w9")

    assert [job.id for job in await utils.list_jobs(task="alpha")] == [a.id, c.id]
    assert [job.id for job in await utils.list_jobs(queue="q1")] == [a.id, b.id]
    assert [job.id for job in await utils.list_jobs(key="bk")] == [b.id]
    assert [job.id for job in await utils.list_jobs(locked_by="w9")] == [c.id]
    assert [job.id for job in await utils.list_jobs(task="alpha", queue="q1")] == [a.id]
    assert await utils.list_jobs(task="gamma") == []


async def test_list_jobs_pages_by_id_without_repeats_or_gaps(utils: WorkerUtils, pool: asyncpg.Pool[Any]) -> None:
    created = [(await add_job(pool, "t", {"n": n})).id for n in range(7)]

    pages: list[list[int]] = []
    after: int | None = None
    while True:
        page = [job.id for job in await utils.list_jobs(limit=3, after_id=after)]
        if not page:
            break
        pages.append(page)
        after = page[-1]

    assert pages == [created[0:3], created[3:6], created[6:7]]


async def test_list_jobs_refuses_an_unknown_state_and_a_bad_limit(utils: WorkerUtils) -> None:
    with pytest.raises(ConfigurationError, match="known: waiting, scheduled, running, retrying, failed"):
        await utils.list_jobs(state="stuck")
    with pytest.raises(ConfigurationError, match="limit"):
        await utils.list_jobs(limit=0)


async def test_list_jobs_refuses_a_non_string_error_and_times_without_an_offset(utils: WorkerUtils) -> None:
    with pytest.raises(ConfigurationError, match=r"^error must be a string, not int"):
        await utils.list_jobs(error=42)  # type: ignore[arg-type]
    # A naive time would be read in the database server's zone, whatever the caller meant.
    with pytest.raises(ConfigurationError, match=r"^created_after must be timezone-aware"):
        await utils.list_jobs(created_after=datetime(2024, 5, 1))
    with pytest.raises(ConfigurationError, match=r"^created_before must be a datetime, not str"):
        await utils.list_jobs(created_before="2024-05-01T00:00:00Z")  # type: ignore[arg-type]


async def test_list_jobs_filters_by_error_text_and_creation_time(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    a, b, c = [await add_job(pool, "t") for _ in range(3)]
    await conn.execute(f"update {JOBS_TABLE} set last_error = 'Disk 90% FULL' where id = $1", a.id)
    await conn.execute(f"update {JOBS_TABLE} set last_error = 'disk 90 full' where id = $1", b.id)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    for job, hours in ((a, 0), (b, 1), (c, 2)):
        await conn.execute(
            f"update {JOBS_TABLE} set created_at = $2 where id = $1", job.id, start + timedelta(hours=hours)
        )

    assert [job.id for job in await utils.list_jobs(error="disk")] == [a.id, b.id]
    assert [job.id for job in await utils.list_jobs(error="90% full")] == [a.id]  # "%" is no wildcard
    hour = timedelta(hours=1)
    assert [job.id for job in await utils.list_jobs(created_after=start + hour)] == [b.id, c.id]
    assert [job.id for job in await utils.list_jobs(created_before=start + hour)] == [a.id]
    assert [job.id for job in await utils.list_jobs(error="disk", created_after=start + hour)] == [b.id]


async def test_task_stats_count_each_state_per_task(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await one_job_in_each_state(pool, conn)
    await add_job(pool, "t")
    idle = await add_job(pool, "idle")
    await utils.complete_jobs([idle.id])

    stats = {row.task_identifier: row for row in await utils.task_stats()}

    t = stats["t"]
    assert (t.waiting, t.scheduled, t.running, t.retrying, t.failed, t.total) == (2, 1, 1, 1, 1, 6)
    assert stats["idle"].total == 0


async def test_queue_stats_show_waiting_running_lock_and_oldest_wait(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    old = await add_job(pool, "t", queue_name="busy", run_at=datetime.now(UTC) - timedelta(minutes=10))
    await add_job(pool, "t", queue_name="busy")
    running = await add_job(pool, "t", queue_name="busy")
    await lock_job(conn, running.id, "w1")
    await lock_queue(conn, "busy", "w1")
    gone = await add_job(pool, "t", queue_name="empty")
    await utils.complete_jobs([gone.id])
    assert old.id  # the oldest waiting job, due ten minutes ago

    stats = {row.queue_name: row for row in await utils.queue_stats()}

    busy = stats["busy"]
    assert (busy.total, busy.waiting, busy.running, busy.locked_by, busy.locked) == (3, 2, 1, "w1", True)
    assert busy.oldest_waiting_age is not None and busy.oldest_waiting_age >= timedelta(minutes=10)
    empty = stats["empty"]
    assert (empty.total, empty.waiting, empty.locked, empty.oldest_waiting_age) == (0, 0, False, None)


async def test_workers_without_the_registry_table_lists_lock_owners_as_unregistered(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "t", queue_name="q")
    await lock_job(conn, job.id, "node-worker")
    await lock_queue(conn, "q", "node-worker")

    (node,) = await utils.workers()

    assert (node.worker_id, node.registered, node.alive, node.locked_jobs, node.locked_queues) == (
        "node-worker",
        False,
        None,
        1,
        1,
    )
    assert node.hostname is None and node.tasks == ()


async def test_workers_lists_registered_workers_alive_or_dead_and_unregistered_owners(
    utils: WorkerUtils, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await migrate_own(pool, SchemaName("graphile_worker"))
    await conn.execute(
        f"insert into {WORKERS_TABLE} (worker_id, hostname, pid, last_heartbeat_at, dead_after, concurrency, tasks,"
        " version) values"
        " ('py-alive', 'host-a', 11, now(), interval '30 seconds', 4, '{mail,sms}', '0.1.0'),"
        " ('py-dead', 'host-b', 12, now() - interval '5 minutes', interval '30 seconds', 2, '{}', '0.1.0')"
    )
    held = await add_job(pool, "t")
    orphan = await add_job(pool, "t")
    await lock_job(conn, held.id, "py-dead")
    await lock_job(conn, orphan.id, "node-worker")

    found = {worker.worker_id: worker for worker in await utils.workers()}

    assert list(found) == ["py-alive", "py-dead", "node-worker"]
    alive, dead, node = found["py-alive"], found["py-dead"], found["node-worker"]
    assert (alive.registered, alive.alive, alive.locked_jobs, alive.hostname, alive.pid) == (
        True,
        True,
        0,
        "host-a",
        11,
    )
    assert (alive.tasks, alive.concurrency, alive.dead_after) == (("mail", "sms"), 4, timedelta(seconds=30))
    assert (dead.registered, dead.alive, dead.locked_jobs) == (True, False, 1)
    assert (node.registered, node.alive, node.locked_jobs) == (False, None, 1)


# -- construction, enqueueing, errors ---------------------------------------------------------------------


async def test_a_dsn_opens_a_pool_that_close_releases_and_a_callers_pool_stays_open(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    async with WorkerUtils(database_url) as owned:
        job = await owned.add_job("t", {"n": 1})
        assert job is not None
        assert [info.id for info in await owned.list_jobs()] == [job.id]
        opened = await owned._get_pool()
    assert not owned._pool.is_open
    assert opened.is_closing()

    borrowed = WorkerUtils(pool)
    await borrowed.close()
    assert not pool.is_closing()
    assert [info.id for info in await borrowed.list_jobs()] == [job.id]


async def test_transform_rewrites_or_drops_every_job_enqueued_through_the_utils(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    def tenant_queue(spec: JobSpec) -> JobSpec | None:
        if spec.identifier == "dropped":
            return None
        return JobSpec(spec.identifier, spec.payload, queue_name="tenant-1", priority=spec.priority)

    utils = WorkerUtils(pool, transform=tenant_queue)

    one = await utils.add_job("kept", {"n": 1}, priority=2)
    none = await utils.add_job("dropped", {"n": 2})
    many = await utils.add_jobs([JobSpec("kept", {"n": 3}), JobSpec("dropped"), JobSpec("kept", {"n": 4})])

    assert none is None
    assert one is not None and (one.queue_name, one.priority) == ("tenant-1", 2)
    assert [(job.payload, job.queue_name) for job in many] == [({"n": 3}, "tenant-1"), ({"n": 4}, "tenant-1")]
    assert await job_count(conn) == 3


async def test_an_unreachable_database_is_a_database_error_without_the_password() -> None:
    utils = WorkerUtils("postgresql://someone:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(DatabaseError) as caught:
        await utils.list_jobs()
    assert "s3cret" not in str(caught.value)
    assert "***" in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_a_missing_schema_is_a_database_error_suggesting_migrate(empty_database_url: str) -> None:
    async with WorkerUtils(empty_database_url) as utils:
        with pytest.raises(DatabaseError, match="backfill migrate") as caught:
            await utils.task_stats()
    assert isinstance(caught.value.__cause__, asyncpg.PostgresError)


async def test_migrate_installs_graphiles_schema_and_backfills_own_tables(empty_database_url: str) -> None:
    async with WorkerUtils(empty_database_url) as utils:
        report = await utils.migrate()
        assert report.to_revision == 20
        assert await utils.workers() == []
    connection = await asyncpg.connect(empty_database_url)
    try:
        assert await connection.fetchval("select to_regclass('graphile_worker.backfill_workers') is not null")
    finally:
        await connection.close()
