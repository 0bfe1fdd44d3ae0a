"""What idle workers and runners run over and over must not read the jobs scheduled for later.

A database may hold a large backlog of jobs due hours from now, while nothing is due: then every empty poll of
every worker, and every other periodic statement, should read a few index pages, not walk the backlog. These
tests put ``FUTURE_JOBS`` jobs an hour ahead and count the buffers that each statement's plan touches
(``EXPLAIN (ANALYZE, BUFFERS)``): a statement that reads the backlog touches hundreds of pages, one that stops at
the first job due later touches a handful, however many are scheduled.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.core.run.job_slice import JobSlice
from backfill.core.run.queries import WorkerQueries, fetch_filter_arguments
from backfill.core.schema import SchemaName
from backfill.dlq.move import MoveSql
from backfill.metrics.queue_stats import QueueStatsSql
from backfill.migrations import migrate_all

SCHEMA = SchemaName.coerce(None)
FUTURE_JOBS = 50_000
# Far below what reading the backlog takes (50,000 index entries fill about 250 pages, the rows about 500), and
# far above what a few index descents take (a dozen pages): room for plan details, none for a walk.
MOST_BUFFERS = 60
LANE_FLAG = "backfill:lane"
# The slices of a core worker and of the runner's two built-in lanes (runner/lane_options.py).
SLICES = {
    "core": JobSlice(),
    "fast": JobSlice(max_priority=-1, forbidden_flags=[LANE_FLAG]),
    "bulk": JobSlice(min_priority=0, forbidden_flags=[LANE_FLAG]),
}


@pytest.fixture
async def backlog(conn: asyncpg.Connection[Any]) -> AsyncIterator[asyncpg.Connection[Any]]:
    """``conn`` over a jobs table holding FUTURE_JOBS jobs due in an hour: most in the Bulk lane's priorities,
    some in the Fast lane's and some in named queues, as a real backlog would be."""
    schema = SCHEMA.quoted
    await conn.execute(f"select {schema}.add_job('scheduled', queue_name => 'serial')")  # registers task and queue
    await conn.execute(
        f"""
        insert into {schema}._private_jobs (task_id, job_queue_id, priority, run_at)
        select (select id from {schema}._private_tasks where identifier = 'scheduled'),
               case when n % 10 = 0 then (select id from {schema}._private_job_queues where queue_name = 'serial') end,
               (array[-10, -5, 0, 0, 0, 5, 10])[1 + n % 7],
               now() + interval '1 hour' + n * interval '1 ms'
          from generate_series(1, $1::int) as n
        """,
        FUTURE_JOBS,
    )
    # The job add_job made is due now: push it into the backlog too, so that nothing at all is due.
    await conn.execute(f"update {schema}._private_jobs set run_at = now() + interval '1 hour'")
    await conn.execute(f"vacuum analyze {schema}._private_jobs")
    yield conn


async def buffers_of(connection: asyncpg.Connection[Any], statement: str, *arguments: Any) -> int:
    """The most shared buffers any node of the statement's plan touched (a node counts its children's)."""
    transaction = connection.transaction()
    await transaction.start()
    try:  # rolled back: an EXPLAIN ANALYZE of a claim or a move really does it
        plan = await connection.fetchval(f"explain (analyze, buffers, format json) {statement}", *arguments)
        return _most_buffers(json.loads(plan)[0]["Plan"])
    finally:
        await transaction.rollback()


async def plan_of(connection: asyncpg.Connection[Any], statement: str, *arguments: Any) -> str:
    """The statement's EXPLAIN (ANALYZE, BUFFERS) as text, rolled back like buffers_of's."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        rows = await connection.fetch(f"explain (analyze, buffers) {statement}", *arguments)
        return "\n".join(row[0] for row in rows)
    finally:
        await transaction.rollback()


def _most_buffers(node: dict[str, Any]) -> int:
    own = int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))
    return max([own, *(_most_buffers(child) for child in node.get("Plans", []))])


async def test_an_empty_poll_does_not_read_the_scheduled_jobs(backlog: asyncpg.Connection[Any]) -> None:
    read = {}
    # Both plans: a worker's prepared statements start with custom plans and may switch to the generic one.
    for plan_mode in ("force_custom_plan", "force_generic_plan"):
        await backlog.execute(f"set plan_cache_mode = {plan_mode}")
        for lane, job_slice in SLICES.items():
            queries = WorkerQueries.for_schema(SCHEMA, job_slice)
            flags = fetch_filter_arguments(job_slice.forbidden_flags, job_slice.required_flags)
            arguments = ("idle-worker", ["scheduled"], 500, *flags)
            assert await backlog.fetch(queries.fetch_jobs, *arguments) == []
            read[f"{lane} fetch_jobs, {plan_mode}"] = await buffers_of(backlog, queries.fetch_jobs, *arguments)
            read[f"{lane} runnable_exists, {plan_mode}"] = await buffers_of(
                backlog, queries.runnable_exists, *arguments
            )
    assert {name: buffers for name, buffers in read.items() if buffers > MOST_BUFFERS} == {}


async def test_the_fetch_still_claims_due_jobs_best_first_across_priorities(
    backlog: asyncpg.Connection[Any],
) -> None:
    """The bounded scan walks one priority after another: the claim must still take the best due jobs first."""
    schema = SCHEMA.quoted
    due = {}  # name -> id, enqueued in an order that matches neither priority nor run_at
    for name, priority, minutes_ago in [("p5", 5, 50), ("p0-new", 0, 1), ("p-5", -5, 2), ("p0-old", 0, 30)]:
        due[name] = await backlog.fetchval(
            f"select id from {schema}.add_job('scheduled', json_build_object('name', $1::text),"
            f" run_at => now() - $2::int * interval '1 minute', priority => $3::int)",
            name,
            minutes_ago,
            priority,
        )
    queries = WorkerQueries.for_schema(SCHEMA)
    claimed = []
    while rows := await backlog.fetch(queries.fetch_jobs, "w", ["scheduled"], 1):
        claimed += [row["id"] for row in rows]
    assert claimed == [due["p-5"], due["p0-old"], due["p0-new"], due["p5"]]
    bulk = WorkerQueries.for_schema(SCHEMA, SLICES["bulk"])
    assert await backlog.fetch(bulk.fetch_jobs, "w", ["scheduled"], 10, [LANE_FLAG]) == []


async def test_a_queue_stats_round_reads_the_ready_jobs_only(backlog: asyncpg.Connection[Any]) -> None:
    """The scheduled jobs are counted apart, and not every round (test_metrics); the round's own statement stops at
    the first job due later, whatever the priority."""
    ready = QueueStatsSql.for_schema(SCHEMA).ready
    for plan_mode in ("force_custom_plan", "force_generic_plan"):
        await backlog.execute(f"set plan_cache_mode = {plan_mode}")
        read = await buffers_of(backlog, ready, None)
        # Seen once over 60 in a full CI run (3,691 buffers, custom plan) and not reproduced since: the plan, in
        # the message, says which node read them if it happens again.
        assert read <= MOST_BUFFERS, f"{plan_mode}: {read} buffers\n{await plan_of(backlog, ready, None)}"


async def test_the_dead_letter_pass_reads_the_dead_jobs_only(backlog: asyncpg.Connection[Any]) -> None:
    """The mover's periodic pass looks for dead jobs among all jobs: an index of the dead ones (dlq/3) spares it
    the walk through the living."""
    await migrate_all(backlog, SCHEMA, dlq=True)
    schema = SCHEMA.quoted
    await backlog.execute(f"select {schema}.add_job('scheduled', max_attempts => 1)")
    await backlog.execute(f"update {schema}._private_jobs set attempts = 1 where run_at <= now()")  # dead
    await backlog.execute(f"analyze {schema}._private_jobs")
    move = MoveSql.for_schema(SCHEMA)
    for plan_mode in ("force_custom_plan", "force_generic_plan"):
        await backlog.execute(f"set plan_cache_mode = {plan_mode}")
        assert await buffers_of(backlog, move.move_all, 500) <= MOST_BUFFERS, plan_mode
    moved = await backlog.fetch(move.move_all, 500)
    assert [row["task_identifier"] for row in moved] == ["scheduled"]
