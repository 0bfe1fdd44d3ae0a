"""The job and admin commands, run in-process through ``backfill.cli.main`` (test_cli.py runs real processes).

``main`` calls ``asyncio.run``, so it runs in a thread beside the test's event loop; capsys captures its stdout
and stderr all the same.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from backfill.core.enqueue import add_job
from backfill.core.migrations.own import migrate_own
from backfill.core.run.options import WorkerOptions
from backfill.core.run.worker import Worker
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry
from backfill.migrations import migrate_all
from tests.integration.worker_support.cli import Cli
from tests.integration.worker_support.helpers import JOBS_TABLE, QUEUES_TABLE, job_count

WORKERS_TABLE = "graphile_worker.backfill_workers"


async def usage_error(cli: Cli, *args: str) -> str:
    """Run a command expected to fail with exit code 2; return its stderr."""
    try:
        code, out, err = await cli(*args)
    except SystemExit as exit_:  # argparse's own errors exit from parse_args
        code, err, out = int(exit_.code or 0), cli.capsys.readouterr().err, ""
    assert code == EXIT_USAGE, err
    assert out == ""
    return err


# -- add --------------------------------------------------------------------------------------------------


async def test_add_prints_the_new_job_and_enqueues_it_with_every_option(
    cli: Cli, conn: asyncpg.Connection[Any]
) -> None:
    code, out, err = await cli("add", "mail", '{"to": "a@example.com"}')
    assert code == EXIT_OK, err
    job_id = int(await conn.fetchval(f"select max(id) from {JOBS_TABLE}"))
    assert out.startswith(f"added job {job_id}: task mail, lane bulk, priority 0, queue -")

    added = await cli.json(
        "add", "sms", '[1, 2]', "--queue", "q1", "--delay", "3600", "--priority", "5", "--max-attempts", "3",
        "--key", "k1", "--key-mode", "preserve_run_at", "--flag", "slow", "--flag", "eu",
    )  # fmt: skip

    assert (added["task_identifier"], added["payload"], added["queue_name"]) == ("sms", [1, 2], "q1")
    assert (added["priority"], added["max_attempts"], added["key"], sorted(added["flags"])) == (
        5,
        3,
        "k1",
        ["backfill:retry=default", "eu", "slow"],  # the client's default policy travels with the job
    )
    assert datetime.fromisoformat(added["run_at"]) > datetime.now(UTC) + timedelta(minutes=59)


async def test_add_enqueues_as_the_client_does_with_the_task_s_published_defaults(
    cli: Cli, database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    # What a runner of this task publishes at start (backfill_task_defaults), without this process knowing it.
    await migrate_all(conn, SchemaName("graphile_worker"))
    await conn.execute(
        "insert into graphile_worker.backfill_task_defaults (identifier, priority, lane, retry_flag, max_attempts,"
        " published_by) values ('reports.monthly', -10, 'reports', 'backfill:retry=fast', 3, 'a runner')"
    )
    added = await cli.json("add", "reports.monthly", "{}")
    assert (added["priority"], added["max_attempts"]) == (-10, 3)
    assert sorted(added["flags"]) == ["backfill:lane", "backfill:lane=reports", "backfill:retry=fast"]

    overridden = await cli.json(
        "add", "reports.monthly", "--lane", "exports", "--retry-policy", "aggressive", "--priority", "bulk_low"
    )
    assert overridden["priority"] == 5
    assert "backfill:lane=exports" in overridden["flags"]
    assert any(flag.startswith("backfill:retry=aggressive") for flag in overridden["flags"]), overridden["flags"]


@pytest.mark.parametrize(("given", "priority"), [("FAST_HIGH", -10), ("emergency", -20), ("7", 7), ("-3", -3)])
async def test_add_takes_a_priority_as_a_number_or_a_name(cli: Cli, given: str, priority: int) -> None:
    added = await cli.json("add", "mail", "--priority", given)
    assert added["priority"] == priority


async def test_add_refuses_an_unknown_priority_name_naming_the_option(cli: Cli, conn: asyncpg.Connection[Any]) -> None:
    code, _out, err = await cli("add", "mail", "--priority", "URGENT")
    assert code == EXIT_USAGE
    assert "--priority" in err and "URGENT" in err and "FAST_HIGH" in err
    assert await job_count(conn) == 0


async def test_add_takes_an_iso_run_at_with_an_offset(cli: Cli) -> None:
    added = await cli.json("add", "mail", "--run-at", "2030-01-31T09:00:00Z")
    assert datetime.fromisoformat(added["run_at"]) == datetime(2030, 1, 31, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["add", "mail", "{bad"], "PAYLOAD_JSON is not valid JSON"),
        (["add", "mail", "5"], "payload: must be a dict"),
        (["add", "mail", "--run-at", "2030-01-31T09:00:00"], "has no UTC offset"),
        (["add", "mail", "--run-at", "next tuesday"], "not an ISO 8601 time"),
        (["add", "mail", "--run-at", "2030-01-31T09:00:00Z", "--delay", "5"], "not allowed with argument"),
        (["add", "mail", "--key-mode", "replace"], "--key-mode needs --key"),
        (["add", "mail", "--max-attempts", "0"], "max_attempts"),
    ],
    ids=["bad-json", "scalar-payload", "naive-time", "not-a-time", "run-at-and-delay", "mode-without-key", "attempts"],
)
async def test_add_with_bad_input_exits_2_naming_the_problem(
    cli: Cli, conn: asyncpg.Connection[Any], args: list[str], complaint: str
) -> None:
    assert complaint in await usage_error(cli, *args)
    assert await job_count(conn) == 0


# -- jobs list / show -------------------------------------------------------------------------------------


async def test_jobs_list_prints_a_table_without_payloads(cli: Cli, pool: asyncpg.Pool[Any]) -> None:
    first = await add_job(pool, "mail", {"secret": "do-not-show"}, queue_name="q1")
    second = await add_job(pool, "sms", job_key="k2")

    code, out, err = await cli("jobs", "list")

    assert code == EXIT_OK, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID",
        "TASK",
        "LANE",
        "QUEUE",
        "STATE",
        "PRIORITY",
        "ATTEMPTS",
        "RUN_AT",
        "LOCKED_BY",
        "KEY",
        "EXCEPTION",
        "LAST_ERROR",
    ]
    assert [row.split()[:5] for row in rows] == [
        [str(first.id), "mail", "bulk", "q1", "waiting"],
        [str(second.id), "sms", "bulk", "-", "waiting"],
    ]
    assert "do-not-show" not in out


async def test_jobs_list_filters_and_pages_with_a_hint_for_the_next_page(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    ids = [(await add_job(pool, "mail", {"n": n})).id for n in range(3)]
    await conn.execute(f"update {JOBS_TABLE} set attempts = max_attempts where id = $1", ids[2])

    code, out, err = await cli("jobs", "list", "--limit", "1")
    assert code == EXIT_OK
    assert f"--after {ids[0]}" in err and f"--after {ids[0]}" not in out

    page = await cli.json("jobs", "list", "--state", "waiting", "--after", str(ids[0]))
    assert [job["id"] for job in page] == [ids[1]]
    failed = await cli.json("jobs", "list", "--state", "failed", "--task", "mail")
    assert [(job["id"], job["state"]) for job in failed] == [(ids[2], "failed")]


async def test_jobs_list_shows_and_filters_by_the_exception_type_of_the_last_failure(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], database_url: str
) -> None:
    registry = TaskRegistry()

    @registry.task("lookup")
    async def lookup(payload: dict[str, Any]) -> None:
        print(payload["email"])  # the KeyError is the point

    @registry.task("parse")
    async def parse(payload: dict[str, Any]) -> None:
        int("twelve")

    await migrate_own(pool, SchemaName("graphile_worker"))
    missing = await add_job(pool, "lookup")
    other_missing = await add_job(pool, "lookup")
    unparsable = await add_job(pool, "parse")
    waiting = await add_job(pool, "mail", run_at=datetime.now(UTC) + timedelta(hours=1))
    await Worker(database_url, tasks=registry, options=WorkerOptions(concurrency=2)).run_once()
    # A later failure written by someone else (a Node worker, a person): the history's type no longer applies.
    await conn.execute(f"update {JOBS_TABLE} set last_error = 'Error: from node' where id = $1", other_missing.id)

    listed = {job["id"]: job for job in await cli.json("jobs", "list")}
    assert {job_id: job["exception_type"] for job_id, job in listed.items()} == {
        missing.id: "KeyError",
        other_missing.id: None,
        unparsable.id: "ValueError",
        waiting.id: None,
    }
    assert listed[missing.id]["last_error"] == "KeyError: 'email'"
    code, out, err = await cli("jobs", "list", "--exception-type", "KeyError")
    assert code == EXIT_OK, err
    _, *rows = out.splitlines()
    assert [row.split()[0] for row in rows] == [str(missing.id)]
    assert "KeyError" in rows[0].split()  # the EXCEPTION column (LAST_ERROR's reads "KeyError:")
    code, out, err = await cli("jobs", "show", str(unparsable.id))
    assert code == EXIT_OK, err
    assert "exception   ValueError" in out.splitlines()


async def test_jobs_show_prints_every_field_and_the_payload(cli: Cli, pool: asyncpg.Pool[Any]) -> None:
    job = await add_job(pool, "mail", {"to": "a@example.com"}, queue_name="q1", job_key="k1")

    code, out, err = await cli("jobs", "show", str(job.id))
    assert code == EXIT_OK, err
    fields = dict(line.split(None, 1) for line in out.split("payload:")[0].splitlines())
    assert (fields["id"], fields["task"], fields["queue"], fields["state"], fields["key"]) == (
        str(job.id), "mail", "q1", "waiting", "k1",
    )  # fmt: skip
    assert json.loads(out.split("payload:\n", 1)[1]) == {"to": "a@example.com"}

    shown = await cli.json("jobs", "show", str(job.id))
    assert (shown["id"], shown["payload"], shown["state"]) == (job.id, {"to": "a@example.com"}, "waiting")
    assert datetime.fromisoformat(shown["run_at"]) == job.run_at


async def test_jobs_show_of_an_unknown_id_exits_3(cli: Cli) -> None:
    code, out, err = await cli("jobs", "show", "424242")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert "no job with id 424242" in err
    code, out, _ = await cli("jobs", "show", "424242", "--json")
    assert (code, json.loads(out)) == (EXIT_NOT_FOUND, None)


# -- jobs complete / fail / reschedule / remove -----------------------------------------------------------


async def test_jobs_complete_names_the_ids_it_could_not_complete(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "mail")

    code, out, err = await cli("jobs", "complete", str(job.id), "999999")

    assert code == EXIT_OK, err
    assert out.strip() == f"completed 1 job: {job.id}"
    assert "999999" in err
    assert await job_count(conn) == 0


async def test_jobs_complete_of_ids_none_of_which_exist_exits_3(cli: Cli) -> None:
    code, out, err = await cli("jobs", "complete", "999998", "999999")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert "999998, 999999" in err
    code, out, _ = await cli("jobs", "complete", "999999", "--json")
    assert (code, json.loads(out)) == (EXIT_NOT_FOUND, [])


async def test_jobs_fail_stores_the_reason_and_requires_one(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "mail")

    (failed,) = await cli.json("jobs", "fail", str(job.id), "--reason", "bad address")

    assert (failed["id"], failed["last_error"], failed["attempts"]) == (job.id, "bad address", failed["max_attempts"])
    row = await conn.fetchrow(f"select attempts, max_attempts, last_error from {JOBS_TABLE} where id = $1", job.id)
    assert row is not None and (row["attempts"], row["last_error"]) == (row["max_attempts"], "bad address")
    assert "--reason" in await usage_error(cli, "jobs", "fail", str(job.id))


async def test_jobs_reschedule_changes_the_fields_given(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "mail", priority=1)
    await conn.execute(f"update {JOBS_TABLE} set attempts = max_attempts where id = $1", job.id)

    code, out, err = await cli("jobs", "reschedule", str(job.id), "--attempts", "0", "--delay", "600")

    assert code == EXIT_OK, err
    assert out.strip() == f"rescheduled 1 job: {job.id}"
    row = await conn.fetchrow(
        f"select attempts, priority, run_at > now() + interval '9 minutes' as later from {JOBS_TABLE}"
    )
    assert row is not None and (row["attempts"], row["priority"], row["later"]) == (0, 1, True)
    assert "at least one of" in await usage_error(cli, "jobs", "reschedule", str(job.id))
    code, _, _ = await cli("jobs", "reschedule", "999999", "--priority", "3")
    assert code == EXIT_NOT_FOUND


async def test_jobs_remove_by_key_and_an_unknown_key_exits_3(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job = await add_job(pool, "mail", job_key="nightly")

    code, out, err = await cli("jobs", "remove", "nightly")
    assert code == EXIT_OK, err
    assert out.strip() == f"removed job {job.id} (task mail)"
    assert await job_count(conn) == 0

    code, out, err = await cli("jobs", "remove", "nightly")
    assert (code, out) == (EXIT_NOT_FOUND, "")
    assert "no job with key 'nightly'" in err


# -- stats / queues / workers -----------------------------------------------------------------------------


async def test_stats_counts_each_task_by_state_with_totals(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await add_job(pool, "mail")
    await add_job(pool, "mail", run_at=datetime.now(UTC) + timedelta(hours=1))
    running = await add_job(pool, "sms")
    await conn.execute(f"update {JOBS_TABLE} set locked_at = now(), locked_by = 'w1' where id = $1", running.id)

    code, out, err = await cli("stats")
    assert code == EXIT_OK, err
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["TASK", "WAITING", "SCHEDULED", "RUNNING", "RETRYING", "FAILED", "TOTAL"]
    assert lines[1:4] == [
        ["mail", "1", "1", "0", "0", "0", "2"],
        ["sms", "0", "0", "1", "0", "0", "1"],
        ["(all", "tasks)", "1", "1", "1", "0", "0", "3"],
    ]
    # Then the same jobs by lane (all three priority 0, no lane flag: the Bulk lane).
    assert lines[4:] == [
        [],
        ["LANE", "WAITING", "SCHEDULED", "RUNNING", "RETRYING", "FAILED", "TOTAL"],
        ["bulk", "1", "1", "1", "0", "0", "3"],
    ]

    stats = await cli.json("stats")
    assert stats["totals"] == {"waiting": 1, "scheduled": 1, "running": 1, "retrying": 0, "failed": 0, "total": 3}
    assert [task["task_identifier"] for task in stats["tasks"]] == ["mail", "sms"]


async def test_queues_shows_backlog_lock_and_oldest_wait(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await add_job(pool, "mail", queue_name="emails", run_at=datetime.now(UTC) - timedelta(minutes=5))
    await conn.execute(f"update {QUEUES_TABLE} set locked_at = now(), locked_by = 'w7' where queue_name = 'emails'")

    code, out, err = await cli("queues")
    assert code == EXIT_OK, err
    header, row = out.splitlines()
    assert header.split() == ["QUEUE", "LANES", "JOBS", "WAITING", "RUNNING", "LOCKED_BY", "LOCKED", "OLDEST_WAITING"]
    assert row.split()[:6] == ["emails", "bulk", "1", "1", "0", "w7"]
    assert row.split()[-1].startswith("5m")

    (queue,) = await cli.json("queues")
    assert (queue["queue_name"], queue["locked_by"], queue["waiting"]) == ("emails", "w7", 1)
    assert queue["oldest_waiting_age"] >= 300


async def test_workers_shows_registered_and_unregistered_lock_owners(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    await migrate_own(pool, SchemaName("graphile_worker"))
    await conn.execute(
        f"insert into {WORKERS_TABLE} (worker_id, hostname, pid, dead_after, concurrency, version)"
        " values ('py-1', 'host-a', 42, interval '30 seconds', 8, '0.1.0')"
    )
    job = await add_job(pool, "mail")
    await conn.execute(f"update {JOBS_TABLE} set locked_at = now(), locked_by = 'node-1' where id = $1", job.id)

    code, out, err = await cli("workers")
    assert code == EXIT_OK, err
    header, registered, unregistered = (line.split() for line in out.splitlines())
    assert header[:9] == ["WORKER", "LANE", "REGISTERED", "ALIVE", "HOST", "PID", "CONCURRENCY", "JOBS", "QUEUES"]
    assert registered[:9] == ["py-1", "-", "yes", "yes", "host-a", "42", "8", "0", "0"]
    assert unregistered[:9] == ["node-1", "-", "no", "unknown", "-", "-", "-", "1", "0"]

    found = await cli.json("workers")
    assert [(w["worker_id"], w["registered"], w["alive"]) for w in found] == [
        ("py-1", True, True),
        ("node-1", False, None),
    ]
    assert found[0]["dead_after"] == 30.0


# -- cleanup / sweep --------------------------------------------------------------------------------------


async def test_cleanup_runs_graphiles_default_tasks_or_those_named(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    failed = await add_job(pool, "doomed", queue_name="q-doomed")
    await conn.execute(f"update {JOBS_TABLE} set attempts = max_attempts where id = $1", failed.id)

    code, out, err = await cli("cleanup")
    assert code == EXIT_OK, err
    assert out.splitlines() == [
        "GC_JOB_QUEUES: deleted 0 empty job queues",
        "GC_TASK_IDENTIFIERS: deleted 0 unused task identifiers",
    ]

    report = await cli.json(
        "cleanup", "--task", "DELETE_PERMAFAILED_JOBS", "--task", "GC_TASK_IDENTIFIERS", "--keep", "doomed"
    )
    assert report == {
        "tasks": ["DELETE_PERMAFAILED_JOBS", "GC_TASK_IDENTIFIERS"],
        "deleted_permafailed_jobs": 1,
        "deleted_task_identifiers": 0,
        "deleted_job_queues": 0,
    }
    assert "GC_EVERYTHING" in await usage_error(cli, "cleanup", "--task", "GC_EVERYTHING")


async def register_dead_worker_holding_a_job(pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]) -> int:
    await migrate_own(pool, SchemaName("graphile_worker"))
    await conn.execute(
        f"insert into {WORKERS_TABLE} (worker_id, hostname, pid, last_heartbeat_at, dead_after)"
        " values ('py-dead', 'host-a', 42, now() - interval '10 minutes', interval '30 seconds')"
    )
    job = await add_job(pool, "mail", queue_name="q1")
    await conn.execute(
        f"update {JOBS_TABLE} set locked_at = now(), locked_by = 'py-dead', attempts = 1 where id = $1", job.id
    )
    await conn.execute(f"update {QUEUES_TABLE} set locked_at = now(), locked_by = 'py-dead'")
    return job.id


async def test_sweep_dry_run_reports_and_changes_nothing(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job_id = await register_dead_worker_holding_a_job(pool, conn)

    code, out, err = await cli("sweep", "--dry-run")

    assert code == EXIT_OK, err
    assert out.splitlines() == [
        "dry run: nothing was changed; a sweep now would do this",
        "dead workers: py-dead",
        f"released jobs: {job_id}",
        "failed as poison pills: none",
        "unlocked queues: q1",
    ]
    assert await conn.fetchval(f"select locked_by from {JOBS_TABLE} where id = $1", job_id) == "py-dead"


async def test_sweep_releases_what_a_dead_worker_held(
    cli: Cli, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any]
) -> None:
    job_id = await register_dead_worker_holding_a_job(pool, conn)

    report = await cli.json("sweep", "--max-recoveries", "3")

    assert report["dead_workers"] == ["py-dead"] and report["released_jobs"] == [job_id]
    assert (report["released_queues"], report["dry_run"]) == (["q1"], False)
    assert await conn.fetchval(f"select locked_by from {JOBS_TABLE} where id = $1", job_id) is None
    assert await conn.fetchval(f"select count(*) from {QUEUES_TABLE} where locked_by is not null") == 0


# -- failures ---------------------------------------------------------------------------------------------


async def test_an_unreachable_database_exits_1_without_printing_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await asyncio.to_thread(main, ["stats", "-c", "postgresql://someone:s3cret@127.0.0.1:1/nowhere"])
    captured = capsys.readouterr()
    assert code == EXIT_FAILURE
    assert "cannot connect" in captured.err and "s3cret" not in captured.err + captured.out


async def test_a_database_without_the_schema_exits_1_suggesting_migrate(
    capsys: pytest.CaptureFixture[str], empty_database_url: str
) -> None:
    code = await asyncio.to_thread(main, ["jobs", "list", "-c", empty_database_url])
    assert code == EXIT_FAILURE
    assert "backfill migrate" in capsys.readouterr().err
