"""Batch jobs: an array payload whose handler returns one result per item; only the failed items are retried.

Every case runs twice: on the fast path (a plain ``async def`` taking only the payload, nothing observing)
and on the observed path (a handler taking a context), which settle batches in different places.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.events import Event, Events
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import JOBS_TABLE, fast_options, job_row

PATHS = ["fast", "context"]


async def ok(value: Any) -> Any:
    return value


async def raises(message: str) -> Any:
    raise ValueError(message)


def batch_registry(path: str, results: Callable[[list[Any]], Any]) -> TaskRegistry:
    registry = TaskRegistry()
    if path == "fast":

        @registry.task("batch")
        async def batch(payload: list[Any]) -> Any:
            return results(payload)

    else:

        @registry.task("batch")
        async def batch_with_context(payload: list[Any], ctx: JobContext) -> Any:
            return results(payload)

    return registry


def one_result_per_item(item: dict[str, Any]) -> Any:
    kind = item.get("fail")
    if kind == "instance":
        return ValueError(f"item {item['n']} failed")
    if kind == "awaitable":
        return raises(f"item {item['n']} failed in its awaitable")
    return ok(item["n"]) if item.get("awaitable") else item["n"]


async def stored_payload(conn: asyncpg.Connection[Any], job_id: int) -> Any:
    return json.loads(await conn.fetchval(f"select payload from {JOBS_TABLE} where id = $1", job_id))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kind", ["instance", "awaitable"])
async def test_only_the_failed_items_are_kept_for_the_retry(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str, kind: str
) -> None:
    items = [{"n": 1}, {"n": 2, "fail": kind}, {"n": 3, "awaitable": True}]
    job = await add_job(pool, "batch", items)
    registry = batch_registry(path, lambda payload: [one_result_per_item(item) for item in payload])

    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert (summary.succeeded, summary.failed) == (0, 1)
    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"].startswith("Batch failures:")
    expected = "item 2 failed" if kind == "instance" else "item 2 failed in its awaitable"
    assert row["last_error"].splitlines()[1:] == [expected]
    assert (row["attempts"], row["locked_by"]) == (1, None)
    assert await stored_payload(conn, job.id) == [{"n": 2, "fail": kind}]


@pytest.mark.parametrize("path", PATHS)
async def test_several_failed_items_are_all_reported_and_kept_in_order(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str
) -> None:
    items = [{"n": 1, "fail": "awaitable"}, {"n": 2}, {"n": 3, "fail": "instance"}, {"n": 4, "awaitable": True}]
    job = await add_job(pool, "batch", items)
    registry = batch_registry(path, lambda payload: [one_result_per_item(item) for item in payload])

    await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"].splitlines() == [
        "Batch failures:",
        "item 1 failed in its awaitable",
        "item 3 failed",
    ]
    assert await stored_payload(conn, job.id) == [{"n": 1, "fail": "awaitable"}, {"n": 3, "fail": "instance"}]


@pytest.mark.parametrize("path", PATHS)
async def test_a_batch_whose_items_all_succeed_is_completed(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str
) -> None:
    job = await add_job(pool, "batch", [{"n": 1}, {"n": 2, "awaitable": True}])
    registry = batch_registry(path, lambda payload: [one_result_per_item(item) for item in payload])

    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert (summary.succeeded, summary.failed) == (1, 0)
    assert await job_row(conn, job.id) is None


@pytest.mark.parametrize("path", PATHS)
async def test_a_result_list_of_another_length_is_a_full_success(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str
) -> None:
    job = await add_job(pool, "batch", [{"n": 1}, {"n": 2}, {"n": 3}])
    # Two results for three items: not a batch answer, so the error objects in it mean nothing.
    registry = batch_registry(path, lambda payload: [ValueError("ignored"), ValueError("ignored")])

    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert (summary.succeeded, summary.failed) == (1, 0)
    assert await job_row(conn, job.id) is None


@pytest.mark.parametrize("path", PATHS)
async def test_a_list_returned_for_an_object_payload_is_a_plain_success(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str
) -> None:
    job = await add_job(pool, "batch", {"items": [1]})
    registry = batch_registry(path, lambda payload: [ValueError("not a batch")])

    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert (summary.succeeded, summary.failed) == (1, 0)
    assert await job_row(conn, job.id) is None


@pytest.mark.parametrize("path", PATHS)
async def test_a_handler_that_raises_fails_the_whole_batch_with_its_payload_intact(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], path: str
) -> None:
    items = [{"n": 1}, {"n": 2}]
    job = await add_job(pool, "batch", items)

    def explode(payload: list[Any]) -> Any:
        raise RuntimeError("the whole batch failed")

    await Worker(database_url, tasks=batch_registry(path, explode), options=fast_options()).run_once()

    row = await job_row(conn, job.id)
    assert row is not None
    assert row["last_error"] == "RuntimeError: the whole batch failed"
    assert await stored_payload(conn, job.id) == items


@pytest.mark.parametrize(
    "observed",
    [
        pytest.param(False, id="unobserved"),
        pytest.param(True, id="with-a-listener"),
    ],
)
async def test_a_tuple_of_results_is_settled_the_same_whether_or_not_anyone_listens(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], observed: bool
) -> None:
    # Listeners only observe (backfill/core/events.py): attaching one must not change what a job's result
    # means. The observed path's settle_batch treats a tuple as one result per item.
    job = await add_job(pool, "batch", [{"n": 1}, {"n": 2, "fail": "instance"}])
    registry = batch_registry("fast", lambda payload: tuple(one_result_per_item(item) for item in payload))
    events = Events()
    heard: list[Event] = []
    if observed:
        events.on("job:complete", heard.append)

    await Worker(database_url, tasks=registry, options=fast_options(), events=events).run_once()

    row = await job_row(conn, job.id)
    assert row is not None, "the failed item of a tuple result was dropped"
    assert row["last_error"] == "Batch failures:\nitem 2 failed"
    assert await stored_payload(conn, job.id) == [{"n": 2, "fail": "instance"}]
    assert len(heard) == int(observed)


async def test_awaitables_of_a_batch_are_awaited_before_the_job_completes(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    finished: list[int] = []

    async def item_work(n: int) -> int:
        finished.append(n)
        return n

    job = await add_job(pool, "batch", [1, 2, 3])
    registry = batch_registry("fast", lambda payload: [item_work(n) for n in payload])

    summary = await Worker(database_url, tasks=registry, options=fast_options()).run_once()

    assert summary.succeeded == 1
    assert sorted(finished) == [1, 2, 3]
    assert await job_row(conn, job.id) is None
