"""BackfillClient.enqueue_many: requests of one shape share the work of build_spec, and still get exactly the
job build_spec would give each, or the error it would raise, at their position."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.core.errors import JobSpecError, PayloadTooLargeError

JOBS = "graphile_worker._private_jobs"
LATER = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


def _requests() -> list[Enqueue]:
    """Shapes interleaved, each repeated with other payloads, times and keys (every request has a unique key,
    which names it in the jobs that come back)."""
    requests = []
    for n in range(4):
        requests += [
            Enqueue("many.a", {"n": n}, job_key=f"a{n}", run_at=LATER if n % 2 else None),
            Enqueue("many.a", [n], priority=-3, queue="serial", job_key=f"a-fast{n}"),
            Enqueue("many.b", {"n": n}, lane="reports", retry_policy="fast", job_key=f"b{n}", flags=["x"]),
            Enqueue("many.b", {"n": n}, flags=("x", "backfill:retry=aggressive"), max_attempts=2, job_key=f"bt{n}"),
            Enqueue("many.b", {"n": n}, timeout=2 if n % 2 else 2.0, job_key=f"bo{n}"),
        ]
    return requests


async def test_each_job_is_what_build_spec_makes_of_its_request(database_url: str) -> None:
    async with BackfillClient(database_url) as client:
        requests = _requests()
        jobs = {job.key: job for job in await client.enqueue_many(requests)}
        assert len(jobs) == len(requests)
        for request in requests:
            spec = client.build_spec(request)
            job = jobs[request.job_key]
            assert (job.task_identifier, job.payload, job.queue_name, job.priority, job.max_attempts) == (
                spec.identifier,
                request.payload,
                spec.queue_name,
                spec.priority,
                spec.max_attempts,
            ), request
            assert job.flags == frozenset(spec.flags or ()), request
            if spec.run_at is not None:
                assert job.run_at == spec.run_at


async def test_a_delay_is_taken_per_request(database_url: str, conn: asyncpg.Connection[Any]) -> None:
    async with BackfillClient(database_url) as client:
        before = await conn.fetchval("select now()")
        jobs = await client.enqueue_many([Enqueue("many.a", {"n": n}, delay=3600 * n) for n in range(3)])
    offsets = sorted(round((job.run_at - before).total_seconds() / 3600) for job in jobs)
    assert offsets == [0, 1, 2]


ONE = Enqueue("many.a", {}, priority=1)


@pytest.mark.parametrize(
    ("first", "second", "field"),
    [
        # Equal to the first request's shape but for a type (True == 1, 3.0 == 3): still checked.
        (ONE, Enqueue("many.a", {}, priority=True), "requests[1].priority"),
        (
            Enqueue("many.a", {}, priority=1, max_attempts=3),
            Enqueue("many.a", {}, priority=1, max_attempts=3.0),  # type: ignore[arg-type]
            "requests[1].max_attempts",
        ),
        # The first request's shape exactly: only the fields of the request's own job differ.
        (ONE, Enqueue("many.a", {}, priority=1, run_at=datetime(2031, 1, 1)), "requests[1].run_at"),
        (ONE, Enqueue("many.a", {}, priority=1, run_at=LATER, delay=timedelta(1)), "requests[1].delay"),
        (ONE, Enqueue("many.a", {}, priority=1, job_key=""), "requests[1].job_key"),
        (ONE, Enqueue("many.a", 5, priority=1), "requests[1].payload"),
        (ONE, Enqueue("many.a", {"big": "x" * 2000}, priority=1), "requests[1].payload"),
    ],
)
async def test_a_bad_request_of_a_known_shape_is_refused_at_its_position(
    database_url: str, conn: asyncpg.Connection[Any], first: Enqueue, second: Enqueue, field: str
) -> None:
    async with BackfillClient(database_url, max_payload_bytes=1000) as client:
        with pytest.raises(JobSpecError) as caught:
            await client.enqueue_many([first, second])
    assert caught.value.field == field
    assert isinstance(caught.value, PayloadTooLargeError) == ("big" in str(second.payload))
    assert await conn.fetchval(f"select count(*) from {JOBS}") == 0


async def test_returning_false_writes_the_jobs_and_says_how_many(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    requests = _requests()
    async with BackfillClient(database_url) as client:
        assert await client.enqueue_many(requests, returning=False) == len(requests)
        expected = {request.job_key: client.build_spec(request) for request in requests}
    rows = await conn.fetch(f"select key, priority, max_attempts, flags::text as flags from {JOBS}")
    assert {row["key"] for row in rows} == set(expected)
    for row in rows:
        spec = expected[row["key"]]
        assert (row["priority"], row["max_attempts"]) == (spec.priority, spec.max_attempts)
        assert set(json.loads(row["flags"])) == set(spec.flags or ())
