"""BackfillClient: what a job looks like in the table after each kind of enqueue."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import backfill
from backfill.client import default as module_api
from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core.errors import ConfigurationError, JobSpecError
from backfill.core.tasks import TaskRegistry
from backfill.priorities import Priority
from backfill.tasks.defaults import TASK_DEFAULTS, task
from backfill.tasks.retry_policies import PRESETS, RetryPolicy

JOBS = "graphile_worker._private_jobs"
# The public jobs view leaves the payload out; read the table with the names joined in.
_ROW = """
    select j.*, t.identifier as task_identifier, q.queue_name
      from graphile_worker._private_jobs as j
      join graphile_worker._private_tasks as t on t.id = j.task_id
      left join graphile_worker._private_job_queues as q on q.id = j.job_queue_id
     where j.id = $1
"""


async def _row(conn: asyncpg.Connection[Any], job_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await conn.fetchrow(_ROW, job_id)
    assert row is not None
    return row


def _flags(row: asyncpg.Record) -> set[str]:
    return set(json.loads(row["flags"])) if row["flags"] else set()


@pytest.fixture
def registered_defaults() -> Iterator[None]:
    registry = TaskRegistry()

    @task("client.report", registry=registry, priority=Priority.BULK_LOW, lane="reports", retry_policy="conservative")
    async def report(payload: Any) -> None:
        return None

    @task("client.sync_customer", registry=registry, queue="customers", retry_policy="fast")
    async def sync_customer(payload: Any) -> None:
        return None

    yield
    TASK_DEFAULTS.pop("client.report", None)
    TASK_DEFAULTS.pop("client.sync_customer", None)


async def test_enqueue_writes_the_default_policy_and_priority(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    client = BackfillClient(pool)
    job = await client.enqueue("client.plain", {"n": 1})
    row = await _row(conn, job.id)
    assert row["task_identifier"] == "client.plain"
    assert json.loads(row["payload"]) == {"n": 1}
    assert row["priority"] == 0
    assert row["max_attempts"] == PRESETS["default"].max_attempts == 8
    assert _flags(row) == {"backfill:retry=default"}


@pytest.mark.parametrize(
    ("method", "priority"),
    [("enqueue_critical", -20), ("enqueue_fast", -5), ("enqueue_bulk", 0)],
)
async def test_conveniences_set_their_priority(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], method: str, priority: int
) -> None:
    job = await getattr(BackfillClient(pool), method)("client.plain", None)
    assert (await _row(conn, job.id))["priority"] == priority
    overridden = await getattr(BackfillClient(pool), method)("client.plain", None, priority=Priority.FAST_HIGH)
    assert (await _row(conn, overridden.id))["priority"] == -10


async def test_every_option_reaches_the_row(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    run_at = datetime.now(UTC) + timedelta(hours=1)
    policy = RetryPolicy(4, initial_delay=0.5, max_delay=10, multiplier=3, jitter=0.2)
    job = await BackfillClient(pool).enqueue(
        "client.plain",
        [1, 2],
        priority=7,
        queue="customer:42",
        lane="reports",
        run_at=run_at,
        job_key="k1",
        max_attempts=2,
        retry_policy=policy,
        flags=["mine", "backfill:retry=fast"],
        timeout=9,
    )
    row = await _row(conn, job.id)
    assert (row["priority"], row["queue_name"], row["run_at"], row["key"], row["max_attempts"]) == (
        7,
        "customer:42",
        run_at,
        "k1",
        2,
    )
    # The policy chosen here wins over a retry flag passed by hand.
    assert _flags(row) == {
        "mine",
        policy.flag,
        "backfill:lane",
        "backfill:lane=reports",
        "backfill:timeout=9",
    }


async def test_delay_sets_run_at_from_now(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    before = datetime.now(UTC)
    job = await BackfillClient(pool).enqueue("client.plain", delay=timedelta(minutes=5))
    after = datetime.now(UTC)
    row = await _row(conn, job.id)
    assert before + timedelta(minutes=5) <= row["run_at"] <= after + timedelta(minutes=5)


async def test_task_defaults_apply_unless_overridden(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], registered_defaults: None
) -> None:
    client = BackfillClient(pool)
    report = await _row(conn, (await client.enqueue("client.report", {})).id)
    assert report["priority"] == 5
    assert report["max_attempts"] == 5
    assert _flags(report) == {"backfill:retry=conservative", "backfill:lane", "backfill:lane=reports"}
    customer = await _row(conn, (await client.enqueue("client.sync_customer", {})).id)
    assert customer["queue_name"] == "customers"
    assert customer["max_attempts"] == 3
    overridden = await _row(
        conn, (await client.enqueue("client.report", {}, priority=-10, retry_policy="aggressive")).id
    )
    assert overridden["priority"] == -10
    assert overridden["max_attempts"] == 12


async def test_enqueue_joins_the_callers_transaction(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    client = BackfillClient(pool)
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        job = await client.enqueue_fast("client.plain", {"tx": True}, connection=connection)
        # Invisible to others until the commit...
        assert await conn.fetchval(f"select count(*) from {JOBS} where id = $1", job.id) == 0
        await transaction.rollback()
    # ...and gone with the rollback.
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_enqueue_many_writes_all_in_one_call(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    jobs = await BackfillClient(pool).enqueue_many(
        [Enqueue("client.plain", {"i": i}, priority=-5 if i % 2 else 5, retry_policy="fast") for i in range(10)]
    )
    assert len(jobs) == 10
    rows = await conn.fetch(f"select priority, max_attempts, flags from {JOBS} order by id")
    assert [r["priority"] for r in rows] == [5, -5] * 5
    assert {r["max_attempts"] for r in rows} == {3}


async def test_enqueue_many_names_the_bad_request(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> None:
    with pytest.raises(JobSpecError, match=r"^requests\[1\]\.priority: "):
        await BackfillClient(pool).enqueue_many([Enqueue("client.plain"), Enqueue("client.plain", priority=99999)])
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"priority": "high"}, "priority"),
        ({"priority": 40000}, "priority"),
        ({"retry_policy": "quick"}, "retry_policy"),
        ({"lane": "Reports"}, "lane"),
        ({"delay": -1}, "delay"),
        ({"delay": 1, "run_at": datetime.now(UTC)}, "delay"),
        ({"flags": "one"}, "flags"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"queue": ""}, "queue_name"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),  # the naive datetime is the bad input
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], options: dict[str, Any], field: str
) -> None:
    with pytest.raises(JobSpecError, match=f"^{field}: "):
        await BackfillClient(pool).enqueue("client.plain", {}, **options)
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_client_owns_and_closes_its_pool(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    async with BackfillClient(database_url) as client:
        await client.enqueue("client.plain")
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 1


async def test_module_level_functions_use_the_environment(
    database_url: str, conn: asyncpg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    try:
        fast = await backfill.enqueue_fast("client.plain", {"a": 1})
        bulk = await backfill.enqueue_bulk("client.plain", {"a": 2})
        critical = await backfill.enqueue_critical("client.plain", {"a": 3})
        plain = await backfill.enqueue("client.plain", {"a": 4}, priority=3)
    finally:
        await module_api.close_default_client()
    priorities = [(await _row(conn, job.id))["priority"] for job in (fast, bulk, critical, plain)]
    assert priorities == [-5, 0, -20, 3]


def test_from_env_without_database_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match=r"^DATABASE_URL: not set"):
        BackfillClient.from_env()
