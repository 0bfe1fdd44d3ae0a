"""``backfill pause|resume|pauses`` and ``backfill jobs cancel|cancellations``, run in-process (see test_cli_admin)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE
from backfill.core.enqueue import add_job
from backfill.core.schema import SchemaName
from backfill.migrations import migrate_all
from tests.integration.worker_support.cli import Cli
from tests.integration.worker_support.helpers import JOBS_TABLE

SCHEMA = SchemaName("graphile_worker")


@pytest.fixture
async def migrated(conn: asyncpg.Connection[Any]) -> asyncpg.Connection[Any]:
    await migrate_all(conn, SCHEMA)
    return conn


async def test_pause_lists_and_resume(cli: Cli, migrated: asyncpg.Connection[Any]) -> None:
    code, out, err = await cli("pause", "--queue", "tenant-7", "--reason", "noisy tenant", "--by", "ops@example")
    assert code == EXIT_OK, err
    assert out.strip() == "paused queue tenant-7: runners start none of its jobs until `backfill resume`"
    [listed] = await cli.json("pauses")
    assert (listed["kind"], listed["name"], listed["paused_by"], listed["reason"]) == (
        "queue", "tenant-7", "ops@example", "noisy tenant"
    )  # fmt: skip
    code, out, _ = await cli("pauses")
    assert out.splitlines()[0].split() == ["KIND", "NAME", "PAUSED_BY", "SINCE", "REASON"]
    assert "tenant-7" in out and "noisy tenant" in out

    code, out, err = await cli("resume", "--queue", "tenant-7")
    assert (code, out.strip()) == (EXIT_OK, "resumed queue tenant-7 (paused by ops@example)")
    code, out, err = await cli("resume", "--queue", "tenant-7")
    assert (code, out) == (EXIT_NOT_FOUND, "") and "was not paused" in err
    code, out, err = await cli("pauses")
    assert (code, out) == (EXIT_OK, "") and "nothing is paused" in err


async def test_pause_refuses_an_unknown_lane_and_needs_one_target(cli: Cli, migrated: asyncpg.Connection[Any]) -> None:
    code, out, err = await cli("pause", "--lane", "reprots")
    assert (code, out) == (EXIT_USAGE, "") and "no such lane" in err and "fast, bulk" in err
    with pytest.raises(SystemExit) as exited:
        await cli("pause", "--lane", "fast", "--task", "t")
    assert exited.value.code == EXIT_USAGE
    assert await migrated.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0


async def test_cancel_by_id_and_by_filter_answers_each_job(cli: Cli, migrated: asyncpg.Connection[Any]) -> None:
    first = await add_job(migrated, "report", {"n": 1}, schema=SCHEMA)
    second = await add_job(migrated, "report", {"n": 2}, queue_name="q", schema=SCHEMA)
    other = await add_job(migrated, "mail", {"n": 3}, schema=SCHEMA)

    answers = await cli.json("jobs", "cancel", str(first.id), "999999", "--reason", "duplicate", "--by", "me")
    assert [(a["job_id"], a["outcome"]) for a in answers] == [(first.id, "cancelled"), (999999, "not_found")]

    code, out, err = await cli("jobs", "cancel", "--task", "report", "--dry-run")
    assert code == EXIT_OK and "would cancel 1 job" in out
    code, out, err = await cli("jobs", "cancel", "--task", "report", "--by", "me")
    assert code == EXIT_OK, err
    assert out.splitlines()[0].split() == ["JOB", "OUTCOME", "WORKER", "DETAIL"]
    assert str(second.id) in out and "1 cancelled" in err
    remaining = await migrated.fetch(f"select id from {JOBS_TABLE} order by id")
    assert [row["id"] for row in remaining] == [other.id]

    code, out, err = await cli("jobs", "cancel", "--task", "report")
    assert (code, out) == (EXIT_NOT_FOUND, "") and "no job matched" in err

    listed = await cli.json("jobs", "cancellations")
    assert [(c["job_id"], c["state"], c["requested_by"]) for c in listed] == [
        (second.id, "cancelled", "me"),
        (first.id, "cancelled", "me"),
    ]
    assert listed[1]["reason"] == "duplicate"
    code, out, err = await cli("jobs", "cancellations", "424242")
    assert (code, out) == (EXIT_NOT_FOUND, "") and "no cancellation found" in err


async def test_cancel_needs_a_choice_and_refuses_bad_input(cli: Cli, migrated: asyncpg.Connection[Any]) -> None:
    code, out, err = await cli("jobs", "cancel")
    assert (code, out) == (EXIT_USAGE, "") and "give job ids, or filters, or --all" in err
    code, out, err = await cli("jobs", "cancel", "0")
    assert (code, out) == (EXIT_USAGE, "") and "0 is not a job id" in err
    code, out, err = await cli("jobs", "cancel", "1", "--by", " ")
    assert (code, out) == (EXIT_USAGE, "") and "--by" in err
    code, out, err = await cli("jobs", "cancellations", "--limit", "5000")
    assert (code, out) == (EXIT_USAGE, "") and "limit" in err


async def test_stats_and_queues_mark_paused_work(cli: Cli, migrated: asyncpg.Connection[Any]) -> None:
    await add_job(migrated, "report", {}, queue_name="tenant-7", schema=SCHEMA)
    await add_job(migrated, "mail", {}, schema=SCHEMA)
    for option, name in (("--task", "report"), ("--queue", "tenant-7"), ("--lane", "bulk")):
        assert (await cli("pause", option, name))[0] == EXIT_OK

    stats = await cli.json("stats")
    assert {t["task_identifier"]: t["paused"] for t in stats["tasks"]} == {"mail": False, "report": True}
    assert {lane["lane"]: lane["paused"] for lane in stats["lanes"]} == {"bulk": True}
    code, out, _ = await cli("stats")
    assert code == EXIT_OK and "report (paused)" in out and "bulk (paused)" in out and "mail (paused)" not in out
    [queue] = await cli.json("queues")
    assert (queue["queue_name"], queue["paused"]) == ("tenant-7", True)
    code, out, _ = await cli("queues")
    assert code == EXIT_OK and out.splitlines()[1].startswith("tenant-7 (paused)")
