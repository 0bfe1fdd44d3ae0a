"""Kept outcomes end to end: a real worker keeps them, the client reads and waits for them, the upkeep prunes them.

Jobs keep their outcome when their task declares ``keep_result`` or their enqueue asks for it; everything else
must leave ``backfill_job_results`` untouched. Waits are checked with a poll interval far longer than the test's
own timeout, so a wait that returns was woken by the worker's notification.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.client.sync_client import SyncBackfillClient
from backfill.core import PermanentFailure, SchemaName, TaskRegistry, Worker, add_job
from backfill.core.errors import JobFailedError, ResultTimeoutError, ResultUnavailableError
from backfill.core.upkeep.result_pruner import prune_expired_results
from backfill.dlq.move import move_batch
from backfill.migrations import migrate_all
from backfill.results.models import OutcomeState
from backfill.tasks.catalog import publish_task_defaults
from backfill.tasks.defaults import TASK_DEFAULTS, TaskDefaults
from tests.integration.worker_support.helpers import fast_options
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
RESULTS = "graphile_worker.backfill_job_results"
NEVER = 3600.0  # a poll interval no test waits for: only a notification can end such a wait in time


def _registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("results.square", keep_result=timedelta(hours=1))
    async def square(payload: Any) -> dict[str, int]:
        return {"square": payload["n"] ** 2}

    @registry.task("results.plain")
    async def plain(payload: Any) -> int:
        return 42

    @registry.task("results.scalar", keep_result=60)
    def scalar(payload: Any) -> str:  # a sync handler, in a thread
        return "done"

    @registry.task("results.unserialisable", keep_result=60)
    async def unserialisable(payload: Any) -> object:
        return object()

    @registry.task("results.fails", keep_result=60)
    async def fails(payload: Any) -> None:
        raise ValueError("upstream said no")

    @registry.task("results.refuses", keep_result=60)
    async def refuses(payload: Any) -> None:
        raise PermanentFailure("bad input")

    return registry


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[BackfillClient]:
    async with BackfillClient(database_url) as created:
        await migrate_all(await created._get_pool(), SCHEMA)
        yield created


async def _run(database_url: str) -> None:
    await Worker(database_url, tasks=_registry(), options=fast_options()).run_once()


async def _kept(conn: asyncpg.Connection[Any]) -> list[asyncpg.Record]:
    return await conn.fetch(f"select * from {RESULTS} order by job_id")


async def test_a_task_that_keeps_results_keeps_value_state_attempts_and_timings(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    job = await client.enqueue("results.square", {"n": 7}, queue="squares", job_key="seven")

    await _run(database_url)

    outcome = await client.result(job.id)
    assert outcome is not None
    assert outcome.state is OutcomeState.SUCCEEDED
    assert outcome.value == {"square": 49}
    assert outcome.unwrap() == {"square": 49}
    assert (outcome.task_identifier, outcome.queue_name, outcome.job_key) == ("results.square", "squares", "seven")
    assert (outcome.attempts, outcome.error, outcome.kept) == (1, None, True)
    assert outcome.started_at is not None and outcome.finished_at is not None
    assert outcome.created_at <= outcome.started_at <= outcome.finished_at
    assert outcome.duration is not None and outcome.duration >= 0
    assert outcome.expires_at is not None
    retention = (outcome.expires_at - outcome.finished_at).total_seconds()
    assert retention == pytest.approx(3600, abs=1)
    assert await conn.fetchval("select count(*) from graphile_worker._private_jobs") == 0


async def test_jobs_that_do_not_ask_keep_nothing(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    jobs = [await client.enqueue("results.plain", {}) for _ in range(3)]

    await _run(database_url)

    assert await _kept(conn) == []
    with pytest.raises(ResultUnavailableError, match=f"job {jobs[0].id}: no outcome is kept"):
        await client.result(jobs[0].id)


async def test_a_job_asking_at_enqueue_keeps_its_outcome_though_its_task_does_not(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    kept = await client.enqueue("results.plain", {}, keep_result=timedelta(minutes=5))
    other = await client.enqueue("results.plain", {})
    assert "backfill:result=300" in kept.flags

    await _run(database_url)

    assert [row["job_id"] for row in await _kept(conn)] == [kept.id]
    outcome = await client.wait(kept, timeout=10)
    assert (outcome.state, outcome.value) == (OutcomeState.SUCCEEDED, 42)
    with pytest.raises(ResultUnavailableError):
        await client.result(other)


async def test_scalars_are_kept_and_a_value_that_is_not_json_is_noted_while_the_job_succeeds(
    client: BackfillClient, database_url: str
) -> None:
    scalar = await client.enqueue("results.scalar", {})
    odd = await client.enqueue("results.unserialisable", {})

    await _run(database_url)

    assert (await client.wait(scalar, timeout=10)).value == "done"
    outcome = await client.wait(odd, timeout=10)
    assert outcome.state is OutcomeState.SUCCEEDED
    assert outcome.value is None
    assert outcome.error is not None
    assert "not JSON-serialisable" in outcome.error and "object" in outcome.error


async def test_a_failure_is_kept_only_once_it_is_final(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    retried = await client.enqueue("results.fails", {}, max_attempts=2)
    refused = await client.enqueue("results.refuses", {}, max_attempts=5)

    await _run(database_url)

    # The retried job has an attempt left: it is pending, and nothing is kept yet.
    assert await client.result(retried) is None
    assert [row["job_id"] for row in await _kept(conn)] == [refused.id]
    outcome = await client.wait(refused, timeout=10)
    assert outcome.state is OutcomeState.FAILED
    assert outcome.error == "bad input"
    assert outcome.attempts == 5  # a permanent failure uses up the attempts
    with pytest.raises(JobFailedError, match=f"job {refused.id} failed: bad input"):
        outcome.unwrap()

    await conn.execute("update graphile_worker._private_jobs set run_at = now() where id = $1", retried.id)
    await _run(database_url)

    outcome = await client.wait(retried, timeout=10)
    assert (outcome.state, outcome.attempts, outcome.max_attempts) == (OutcomeState.FAILED, 2, 2)
    assert outcome.error == "ValueError: upstream said no"


async def test_a_job_failed_for_good_elsewhere_reports_its_row(
    client: BackfillClient, conn: asyncpg.Connection[Any]
) -> None:
    # Failed by hand (as a Node worker or an operator would): nothing kept, but the row says how it ended.
    job = await client.enqueue("results.plain", {})
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'gave up' where id = $1",
        job.id,
    )

    outcome = await client.result(job)

    assert outcome is not None
    assert (outcome.state, outcome.error, outcome.kept) == (OutcomeState.FAILED, "gave up", False)


async def _checked_once_pending(client: BackfillClient, job_id: int) -> asyncio.Event:
    """An event set once a wait's read of ``job_id`` found it pending: from then on, only a notification (or the
    poll, which these tests put an hour away) can end that wait."""
    read = client._outcomes.outcome
    pending = asyncio.Event()

    async def outcome(asked: int) -> Any:
        found = await read(asked)
        if asked == job_id and found is None:
            pending.set()
        return found

    client._outcomes.outcome = outcome  # type: ignore[method-assign,assignment]
    return pending


async def test_wait_is_woken_by_the_workers_notification(client: BackfillClient, database_url: str) -> None:
    job = await client.enqueue("results.square", {"n": 3})
    pending = await _checked_once_pending(client, job.id)
    waiting = asyncio.create_task(client.wait(job, timeout=NEVER, poll_interval=NEVER))
    await asyncio.wait_for(pending.wait(), 10)

    await _run(database_url)

    outcome = await asyncio.wait_for(waiting, 20)
    assert outcome.value == {"square": 9}


async def test_many_waits_share_one_listening_connection(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    jobs = [await client.enqueue("results.square", {"n": n}) for n in range(20)]
    waits = [asyncio.create_task(client.wait(job, timeout=NEVER, poll_interval=NEVER)) for job in jobs]

    async def listeners() -> int:
        return int(
            await conn.fetchval(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and query ilike 'listen %backfill:results%'"
            )
        )

    await wait_for(listeners, message="a LISTEN on backfill:results")
    assert await listeners() == 1

    await _run(database_url)

    outcomes = await asyncio.wait_for(asyncio.gather(*waits), 20)
    assert [outcome.value["square"] for outcome in outcomes] == [n * n for n in range(20)]


async def test_wait_times_out_for_a_job_nobody_runs(client: BackfillClient) -> None:
    job = await client.enqueue("results.square", {"n": 1})

    with pytest.raises(ResultTimeoutError, match=f"job {job.id} did not end within 0.2s"):
        await client.wait(job, timeout=0.2)

    assert await client.result(job) is None


async def test_wait_fails_at_once_for_a_job_whose_task_is_published_keeping_nothing(client: BackfillClient) -> None:
    await publish_task_defaults(await client._get_pool(), SCHEMA, ["results.plain"])
    job = await client.enqueue("results.plain", {})

    with pytest.raises(ResultUnavailableError, match=r"neither the job nor its task 'results\.plain' asked"):
        await client.wait(job, timeout=NEVER, poll_interval=NEVER)


async def test_a_wait_on_a_job_of_an_unknown_task_ends_when_the_job_ends_keeping_nothing(
    client: BackfillClient, database_url: str
) -> None:
    # Nobody published results.plain: the job might keep its outcome, so the wait waits, and its poll finds the
    # job gone with nothing kept (no notification comes for a job that keeps nothing).
    job = await client.enqueue("results.plain", {})
    pending = await _checked_once_pending(client, job.id)
    waiting = asyncio.create_task(client.wait(job, timeout=NEVER, poll_interval=0.05))
    await asyncio.wait_for(pending.wait(), 10)

    await _run(database_url)

    with pytest.raises(ResultUnavailableError, match="no outcome is kept for it and it is not queued"):
        await asyncio.wait_for(waiting, 20)


async def test_a_task_whose_runner_published_keep_result_is_kept_and_waited_on(
    client: BackfillClient, database_url: str
) -> None:
    # A web process that never imported the task learns its retention from the catalog a runner published.
    TASK_DEFAULTS["results.published"] = TaskDefaults(keep_result=120.0)
    try:
        await publish_task_defaults(await client._get_pool(), SCHEMA, ["results.published"])
    finally:
        del TASK_DEFAULTS["results.published"]

    job = await client.enqueue("results.published", {})

    assert "backfill:result=120" in job.flags


async def test_cancelling_a_queued_job_keeps_the_cancellation(client: BackfillClient) -> None:
    # The flag is what an operator's cancellation reads (the task's retention lives in the runner's registry).
    job = await client.enqueue("results.square", {"n": 2}, keep_result=60)
    pending = await _checked_once_pending(client, job.id)
    waiting = asyncio.create_task(client.wait(job, timeout=NEVER, poll_interval=NEVER))
    await asyncio.wait_for(pending.wait(), 10)

    await client.cancel([job.id], reason="not needed")

    outcome = await asyncio.wait_for(waiting, 20)
    assert (outcome.state, outcome.error, outcome.started_at) == (OutcomeState.CANCELLED, "not needed", None)


async def test_expired_outcomes_are_pruned_and_others_stay(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    jobs = [await client.enqueue("results.square", {"n": n}) for n in range(5)]
    await _run(database_url)
    expired = [job.id for job in jobs[:3]]
    await conn.execute(f"update {RESULTS} set expires_at = now() - interval '1 second' where job_id = any($1)", expired)

    pool = await client._get_pool()
    assert await prune_expired_results(pool, SCHEMA, batch=2) == 3

    assert [row["job_id"] for row in await _kept(conn)] == [job.id for job in jobs[3:]]
    with pytest.raises(ResultUnavailableError, match="retention has passed"):
        await client.result(expired[0])


async def test_the_sync_client_blocks_until_the_outcome(database_url: str, client: BackfillClient) -> None:
    job = await client.enqueue("results.square", {"n": 5})
    sync = SyncBackfillClient(database_url)
    try:
        waiting = asyncio.create_task(asyncio.to_thread(sync.wait, job.id, timeout=30, poll_interval=NEVER))
        assert sync.result(job.id) is None
        await _run(database_url)
        outcome = await asyncio.wait_for(waiting, 20)
    finally:
        await asyncio.to_thread(sync.close)

    assert outcome.value == {"square": 25}


async def test_a_running_job_cancelled_on_its_worker_keeps_the_cancellation(
    client: BackfillClient, database_url: str
) -> None:
    started = asyncio.Event()
    registry = TaskRegistry()

    @registry.task("results.slow", keep_result=60)
    async def slow(payload: Any) -> str:
        started.set()
        await asyncio.Event().wait()  # until cancelled
        return "never"

    worker = Worker(database_url, tasks=registry, options=fast_options())
    running = asyncio.create_task(worker.run())
    try:
        job = await client.enqueue("results.slow", {})
        await asyncio.wait_for(started.wait(), 10)
        worker.cancel_job(job.id, "operator said stop")
        outcome = await client.wait(job, timeout=10, poll_interval=NEVER)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 20)

    assert (outcome.state, outcome.error, outcome.value) == (OutcomeState.CANCELLED, "operator said stop", None)
    assert outcome.started_at is not None  # it ran: claimed, then cancelled


async def test_core_add_job_takes_keep_result_too(client: BackfillClient, database_url: str) -> None:
    job = await add_job(await client._get_pool(), "results.plain", {}, keep_result=timedelta(seconds=90))
    assert "backfill:result=90" in job.flags

    await _run(database_url)

    outcome = await client.wait(job, timeout=10)
    assert (outcome.state, outcome.value) == (OutcomeState.SUCCEEDED, 42)
    assert outcome.expires_at is not None and outcome.finished_at is not None
    assert (outcome.expires_at - outcome.finished_at).total_seconds() == pytest.approx(90, abs=1)


async def test_a_job_failed_for_good_elsewhere_keeps_its_outcome_when_the_dead_letter_move_takes_it(
    client: BackfillClient, conn: asyncpg.Connection[Any]
) -> None:
    # Failed by something that keeps no outcome (an operator here; a Node worker or the sweeper's poison rule
    # alike): the move to the dead-letter queue keeps it from the row.
    job = await client.enqueue("results.plain", {}, keep_result=120)
    other = await client.enqueue("results.plain", {})
    await conn.execute(
        "update graphile_worker._private_jobs set attempts = max_attempts, last_error = 'gave up'"
        " where id = any($1::bigint[])",
        [job.id, other.id],
    )
    before = await client.result(job)
    assert before is not None and before.kept is False  # what the row says, while it is there

    moved = await move_batch(conn, SCHEMA, job_ids=None)

    assert sorted(m.job_id for m in moved) == [job.id, other.id]
    outcome = await client.result(job)
    assert outcome is not None
    assert (outcome.state, outcome.error, outcome.kept) == (OutcomeState.FAILED, "gave up", True)
    assert [row["job_id"] for row in await _kept(conn)] == [job.id]  # the other did not ask


async def test_the_listening_connection_given_back_is_no_longer_watched(
    client: BackfillClient, database_url: str, conn: asyncpg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The wait gives its LISTEN connection back to the pool when it ends; that connection's later loss (it serves
    # other work by then) is not the waiter's to report.
    job = await client.enqueue("results.square", {"n": 4})
    await _run(database_url)
    async with BackfillClient(database_url, max_pool_size=2) as small:  # the wait uses both: LISTEN, and the read
        listening: list[int] = []
        read = small._outcomes.outcome

        async def outcome(asked: int) -> Any:
            listening.append(small._waiter._connection.get_server_pid())
            return await read(asked)

        small._outcomes.outcome = outcome  # type: ignore[method-assign,assignment]
        await small.wait(job, timeout=10)
        (pid,) = listening
        assert small._waiter._connection is None  # given back

        await conn.execute("select pg_terminate_backend($1)", pid)
        pool = await small._get_pool()
        async with pool.acquire() as first, pool.acquire() as second:  # one of them is the terminated one
            for connection in (first, second):
                # The dead one fails, however asyncpg says so (a reset, a closed connection, a protocol state):
                # what matters here is that asyncpg has then seen it terminated and called its listeners.
                with contextlib.suppress(Exception):
                    await connection.fetchval("select 1")

    assert "listening for job outcomes was lost" not in caplog.text
