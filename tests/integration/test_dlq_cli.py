"""``backfill dlq …``, run in-process through ``backfill.cli.main`` (in a thread: main calls asyncio.run)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from backfill.dlq import DeadLetterMover, EntryState
from tests.integration.test_dlq_support import DLQ, JOBS, SCHEMA, entries, installed, make_dead


class Cli:
    """Runs ``backfill ARGS -c DATABASE_URL`` and returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], database_url: str) -> None:
        self.capsys = capsys
        self.database_url = database_url

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = await asyncio.to_thread(main, [*args, "-c", self.database_url])
        except SystemExit as exit_:  # argparse's own usage errors
            code = int(exit_.code or 0)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    async def json(self, *args: str, code: int = EXIT_OK) -> Any:
        got, out, err = await self(*args, "--json")
        assert got == code, err
        return json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    return Cli(capsys, database_url)


SMTP_TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/mail.py", line 12, in send\n'
    "    smtp.send_message(message)\n"
    "smtplib.SMTPResponseException: (554, b'refused')\n"
)


@pytest.fixture
async def dead(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    """Three entries by task (mail twice, sms once); their entry ids by name."""
    await installed(pool)
    smtp: dict[str, Any] = {"exception_type": "smtplib.SMTPResponseException", "traceback": SMTP_TRACEBACK}
    jobs = {
        "mail1": await make_dead(
            pool, "mail", ["SMTP timeout", "SMTP refused\n  at line 3"], queue_name="emails", **smtp
        ),
        "mail2": await make_dead(pool, "mail", ["SMTP refused"], payload='{"to": "b@example.com"}', **smtp),
        "sms": await make_dead(pool, "sms", ["quota"], permanent=True),
    }
    await DeadLetterMover(pool, SCHEMA).move_now()
    rows = await pool.fetch(f"select id, job_id from {DLQ}")
    by_job = {row["job_id"]: row["id"] for row in rows}
    return {name: by_job[job] for name, job in jobs.items()}


async def test_list_prints_a_table_pages_and_json(cli: Cli, dead: dict[str, int]) -> None:
    code, out, err = await cli("dlq", "list")
    assert code == EXIT_OK, err
    header, *rows = out.splitlines()
    assert header.split() == [
        "ID",
        "TASK",
        "QUEUE",
        "STATE",
        "REASON",
        "ATTEMPTS",
        "FAILED_AT",
        "REQUEUES",
        "LAST_ERROR",
    ]
    assert [int(row.split()[0]) for row in rows] == [dead["sms"], dead["mail2"], dead["mail1"]]
    assert "b@example.com" not in out  # no payloads in tables

    code, out, err = await cli("dlq", "list", "--limit", "2")
    assert len(out.splitlines()) == 3 and "--after" in err
    cursor = err.split("--after '", 1)[1].split("'", 1)[0]
    page = await cli.json("dlq", "list", "--limit", "2", "--after", cursor)
    assert [entry["id"] for entry in page["entries"]] == [dead["mail1"]] and page["next_cursor"] is None

    filtered = await cli.json("dlq", "list", "--task", "mail", "--error", "refused", "--queue", "emails")
    assert [entry["id"] for entry in filtered["entries"]] == [dead["mail1"]]
    assert filtered["entries"][0]["errors"][1]["error"] == "SMTP refused\n  at line 3"
    assert (await cli.json("dlq", "list", "--state", "requeued"))["entries"] == []


async def test_show_prints_every_error_and_exits_3_for_an_unknown_id(cli: Cli, dead: dict[str, int]) -> None:
    code, out, err = await cli("dlq", "show", str(dead["mail1"]))
    assert code == EXIT_OK, err
    assert "#1 job" in out and "SMTP timeout" in out and "#2 job" in out and "      at line 3" in out
    assert '"to"' not in out and "payload:" in out
    assert "exception     smtplib.SMTPResponseException" in out.splitlines()
    traceback = out.split("traceback (last attempt):\n", 1)[1].split("notes:", 1)[0]
    assert traceback == "".join("  " + line + "\n" for line in SMTP_TRACEBACK.splitlines())
    code, out, err = await cli("dlq", "show", str(dead["sms"]))  # none recorded: said so
    assert "traceback (last attempt):\n  -\n" in out

    shown = await cli.json("dlq", "show", str(dead["mail2"]))
    assert shown["payload"] == {"to": "b@example.com"} and shown["state"] == "dead"

    code, out, err = await cli("dlq", "show", "999999")
    assert (code, out) == (EXIT_NOT_FOUND, "") and "no dead-letter entry" in err
    assert await cli.json("dlq", "show", "999999", code=EXIT_NOT_FOUND) is None


async def test_requeue_by_id_filter_and_all_with_dry_run_and_overrides(
    cli: Cli, dead: dict[str, int], pool: asyncpg.Pool[Any]
) -> None:
    code, out, err = await cli("dlq", "requeue", "--task", "mail", "--dry-run")
    assert code == EXIT_OK, err
    assert out.startswith("dry run: nothing was changed") and "would requeue 2 entries" in out
    assert await pool.fetchval(f"select count(*) from {JOBS}") == 0

    code, out, err = await cli("dlq", "requeue")  # no ids, no filter: must be --all
    assert code == EXIT_USAGE and "all=True" in err
    code, out, err = await cli("dlq", "requeue", str(dead["sms"]), "--task", "sms")
    assert code == EXIT_USAGE and "not both" in err
    code, _, err = await cli("dlq", "requeue", "--run-at", "tomorrow")
    assert code == EXIT_USAGE and "ISO 8601" in err

    code, out, err = await cli(
        "dlq", "requeue", str(dead["sms"]), "--priority", "-2", "--max-attempts", "4", "--delay", "3600",
        "--note", "quota raised",
    )  # fmt: skip
    assert code == EXIT_OK, err
    job_id = int(await pool.fetchval(f"select requeued_job_id from {DLQ} where id = $1", dead["sms"]))
    assert out.strip() == f"requeued 1 entry: {dead['sms']} as job {job_id}"
    job = await pool.fetchrow(
        f"select priority, max_attempts, run_at > now() as later from {JOBS} where id = $1", job_id
    )
    assert job is not None and tuple(job) == (-2, 4, True)

    code, out, err = await cli("dlq", "requeue", str(dead["sms"]))  # already requeued: nothing done
    assert code == EXIT_NOT_FOUND and f"already requeued as job {job_id}" in err

    result = await cli.json("dlq", "requeue", "--all", "--yes")
    assert sorted(r["entry_id"] for r in result["requeued"]) == sorted([dead["mail1"], dead["mail2"]])
    assert all(entry.state == EntryState.REQUEUED for entry in await entries(pool))


async def test_delete_note_and_stats(cli: Cli, dead: dict[str, int], pool: asyncpg.Pool[Any]) -> None:
    code, out, err = await cli("dlq", "note", str(dead["mail1"]), "looked at it")
    assert (code, out.strip()) == (EXIT_OK, f"noted on entry {dead['mail1']}")
    assert (await cli("dlq", "note", "999999", "x"))[0] == EXIT_NOT_FOUND

    stats = await cli.json("dlq", "stats")
    assert (stats["total"], stats["dead"], stats["requeued"]) == (3, 3, 0)
    assert stats["by_task"] == [{"value": "mail", "count": 2}, {"value": "sms", "count": 1}]
    assert stats["top_errors"][0] == {"value": "SMTP refused", "count": 2}
    assert stats["by_exception_type"] == [
        {"value": "smtplib.SMTPResponseException", "count": 2},
        {"value": "(unknown)", "count": 1},
    ]
    code, out, _ = await cli("dlq", "stats")
    assert code == EXIT_OK and out.startswith("3 entries: 3 dead, 0 requeued") and "permanent_failure" in out
    exceptions = out.split("EXCEPTION", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert [line.split() for line in exceptions] == [["smtplib.SMTPResponseException", "2"], ["(unknown)", "1"]]

    code, out, err = await cli("dlq", "delete", "--task", "mail", "--dry-run")
    assert code == EXIT_OK and "would delete 2 entries" in out
    code, out, err = await cli("dlq", "delete", str(dead["sms"]), "999999")
    assert code == EXIT_OK and out.strip() == f"deleted 1 entry: {dead['sms']}" and "no such entry: 999999" in err
    assert (await cli("dlq", "delete", "--task", "nothing-like-it"))[0] == EXIT_NOT_FOUND
    deleted = await cli.json("dlq", "delete", "--all", "--yes")
    assert sorted(deleted["deleted"]) == sorted([dead["mail1"], dead["mail2"]])
    assert await pool.fetchval(f"select count(*) from {DLQ}") == 0


async def test_exception_type_filters_list_requeue_and_delete(
    cli: Cli, dead: dict[str, int], pool: asyncpg.Pool[Any]
) -> None:
    smtp = "smtplib.SMTPResponseException"
    listed = await cli.json("dlq", "list", "--exception-type", smtp)
    assert [entry["id"] for entry in listed["entries"]] == [dead["mail2"], dead["mail1"]]
    assert all(entry["exception_type"] == smtp for entry in listed["entries"])
    listed = await cli.json("dlq", "list", "--exception-type", smtp, "--error", "timeout")
    assert [entry["id"] for entry in listed["entries"]] == [dead["mail1"]]
    # Exact: neither another case, nor a part of the name, nor the stats' "(unknown)" label.
    for other in ("SMTPResponseException", smtp.lower(), "(unknown)"):
        assert (await cli.json("dlq", "list", "--exception-type", other))["entries"] == []

    code, out, err = await cli("dlq", "requeue", "--exception-type", smtp, "--dry-run")
    assert code == EXIT_OK, err
    assert f"would requeue 2 entries: {', '.join(map(str, sorted([dead['mail1'], dead['mail2']])))}" in out
    code, out, err = await cli("dlq", "delete", "--exception-type", "KeyError", "--dry-run")
    assert code == EXIT_NOT_FOUND and "no entry matched" in err
    code, out, err = await cli("dlq", "requeue", str(dead["sms"]), "--exception-type", smtp)
    assert code == EXIT_USAGE and "not both" in err
    code, out, err = await cli("dlq", "list", "--exception-type", "")
    assert code == EXIT_USAGE and "exception_type" in err

    deleted = await cli.json("dlq", "delete", "--exception-type", smtp, "--task", "mail", "--yes")
    assert sorted(deleted["deleted"]) == sorted([dead["mail1"], dead["mail2"]])
    assert [entry.id for entry in await entries(pool)] == [dead["sms"]]


async def test_a_database_without_the_table_exits_1_saying_how_to_install_it(cli: Cli) -> None:
    code, out, err = await cli("dlq", "list")
    assert (code, out) == (EXIT_FAILURE, "") and "dlq_schema.sql" in err
