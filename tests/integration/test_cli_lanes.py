"""Lanes are visible to operators: `workers` shows each worker's lane, `jobs list` shows and filters by lane,
`stats` counts jobs per lane and `queues` names the lanes of each queue's jobs (tables and --json)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_OK, EXIT_USAGE
from backfill.client.async_client import BackfillClient
from backfill.core.tasks import TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.integration.worker_support.cli import Cli

JOBS = "graphile_worker._private_jobs"


async def _enqueue_one_per_lane(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    client = BackfillClient(pool)
    return {
        "fast": (await client.enqueue_fast("mail", {}, queue="customer:1")).id,
        "bulk": (await client.enqueue_bulk("mail", {}, queue="customer:1")).id,
        "reports": (await client.enqueue("render", {}, lane="reports")).id,
    }


async def test_workers_shows_the_lane_of_each_runner_worker(cli: Cli, database_url: str) -> None:
    registry = TaskRegistry()

    @registry.task("lanes.noop")
    async def noop(payload: Any) -> None:
        return None

    settings = BackfillSettings.load(env_file=None, database_url=database_url, lanes="reports=1")
    async with WorkerRunner(settings, tasks=registry) as runner:
        workers = await cli.json("workers")
        code, out, err = await cli("workers")
        expected = {worker.worker_id: lane for lane, worker in runner.workers.items()}
    assert {w["worker_id"]: w["lane"] for w in workers if w["registered"]} == expected
    assert set(expected.values()) == {"fast", "bulk", "reports"}
    assert code == EXIT_OK, err
    header, *lines = out.splitlines()
    assert header.split()[:2] == ["WORKER", "LANE"]
    assert {line.split()[1] for line in lines} == {"fast", "bulk", "reports"}


async def test_jobs_list_shows_and_filters_by_lane(cli: Cli, pool: asyncpg.Pool[Any]) -> None:
    ids = await _enqueue_one_per_lane(pool)
    listed = await cli.json("jobs", "list")
    assert {job["id"]: job["lane"] for job in listed} == {job_id: lane for lane, job_id in ids.items()}
    for lane, job_id in ids.items():
        assert [job["id"] for job in await cli.json("jobs", "list", "--lane", lane)] == [job_id]
    code, out, err = await cli("jobs", "list", "--lane", "reports")
    assert code == EXIT_OK, err
    header, line = out.splitlines()
    assert header.split()[:3] == ["ID", "TASK", "LANE"] and line.split()[:3] == [
        str(ids["reports"]),
        "render",
        "reports",
    ]


@pytest.mark.parametrize("bad", ["Reports!", "x" * 50])
async def test_jobs_list_refuses_a_bad_lane_name_naming_the_option(cli: Cli, bad: str) -> None:
    code, _out, err = await cli("jobs", "list", "--lane", bad)
    assert code == EXIT_USAGE
    assert "--lane" in err


async def test_stats_counts_jobs_per_lane_and_queues_name_their_lanes(
    cli: Cli,
    pool: asyncpg.Pool[Any],
) -> None:
    await _enqueue_one_per_lane(pool)
    # The custom-lane job due in an hour: scheduled, not waiting.
    await pool.execute(
        f"update {JOBS} set run_at = now() + interval '1 hour'"
        " where task_id = (select id from graphile_worker._private_tasks where identifier = 'render')"
    )
    stats = await cli.json("stats")
    by_lane = {row["lane"]: (row["waiting"], row["scheduled"], row["total"]) for row in stats["lanes"]}
    assert by_lane == {"bulk": (1, 0, 1), "fast": (1, 0, 1), "reports": (0, 1, 1)}
    code, out, err = await cli("stats")
    assert code == EXIT_OK, err
    assert any(line.split()[:1] == ["LANE"] for line in out.splitlines())
    assert any(line.split()[:3] == ["reports", "0", "1"] for line in out.splitlines())

    queues = await cli.json("queues")
    assert [(q["queue_name"], q["lanes"]) for q in queues] == [("customer:1", ["bulk", "fast"])]
    code, out, err = await cli("queues")
    assert code == EXIT_OK, err
    header, line = out.splitlines()
    assert header.split()[:2] == ["QUEUE", "LANES"] and line.split()[:2] == ["customer:1", "bulk,fast"]
