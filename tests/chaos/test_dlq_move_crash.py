"""No job is lost when the process moving it into the dead-letter queue dies half-way through the move.

The move is one statement in an explicit transaction. To catch it half-way, a trigger on ``backfill_dlq``
(installed here, for the test only) waits on an advisory lock the test holds: when the mover's backend waits
there, its statement has already deleted the job from ``_private_jobs`` (the test checks: the row is locked
by that transaction) and not yet written the entry. A ``lock table backfill_dlq`` would not do: PostgreSQL
locks every table a statement names before running any of it, so the statement would wait before deleting
anything and prove nothing.

Then the mover dies — SIGKILL of its process, or ``pg_terminate_backend`` of its connection — and the lock
is released. The job must still be in the jobs table, permanently failed with its history, and not in the
dead-letter queue; the next move must take it exactly once, with every error.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.own import migrate_own
from backfill.core.schema import SchemaName
from backfill.dlq import DeadLetterMover, migrate_dlq
from tests.chaos.harness import JOBS, REPO_ROOT, START_TIMEOUT, _environment, with_application_name
from tests.support.waiting import wait_for

pytestmark = pytest.mark.chaos

SCHEMA = SchemaName("graphile_worker")
DLQ = "graphile_worker.backfill_dlq"
ERRORS = "graphile_worker.backfill_job_errors"
GATE = (4242, 7)  # the advisory lock (two-int form) the trigger waits on

_GATE_DDL = f"""
    create function public.chaos_dlq_gate() returns trigger language plpgsql as $body$
    begin
      perform pg_advisory_xact_lock({GATE[0]}, {GATE[1]});
      return new;
    end;
    $body$;
    create trigger chaos_dlq_gate before insert or update on {DLQ}
      for each row execute function public.chaos_dlq_gate();
"""


async def dead_job(conn: asyncpg.Connection[Any]) -> int:
    """A job that failed both its attempts on a backfill worker: history rows, then the row."""
    job_id = int(await conn.fetchval("select id from graphile_worker.add_job('chaos_job', max_attempts => 2)"))
    for attempt in (1, 2):
        await conn.execute(
            f"""
            with failed as (
              update {JOBS} set attempts = $2::int, last_error = 'failure ' || $2::int where id = $1::bigint
              returning id
            )
            insert into {ERRORS} (job_id, attempt, error) select id, $2::int, 'failure ' || $2::int from failed
            """,
            job_id,
            attempt,
        )
    return job_id


@pytest.mark.parametrize("fault", ["sigkill", "terminate_backend"])
async def test_a_mover_killed_mid_move_loses_no_job_and_the_next_move_takes_it_once(
    chaos_db: str, admin: asyncpg.Connection[Any], tmp_path: Path, fault: str
) -> None:
    await migrate_own(admin, SCHEMA)
    await migrate_dlq(admin, SCHEMA)
    job_id = await dead_job(admin)
    await admin.execute(_GATE_DDL)
    gate = await asyncpg.connect(chaos_db)
    await gate.execute("select pg_advisory_lock($1::int, $2::int)", *GATE)
    name = f"chaos-dlq-{secrets.token_hex(4)}"
    stderr_path = tmp_path / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.chaos.dlq_mover_process", "--dsn", with_application_name(chaos_db, name),
            cwd=REPO_ROOT, env=_environment(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )  # fmt: skip
    try:

        async def waiting_at_the_gate() -> int | None:
            if process.returncode is not None:
                raise AssertionError(f"the mover exited early:\n{stderr_path.read_text()[-3000:]}")
            pid = await admin.fetchval(
                "select pid from pg_stat_activity where application_name = $1::text"
                " and wait_event_type = 'Lock' and wait_event = 'advisory'",
                name,
            )
            return None if pid is None else int(pid)

        backend = await wait_for(waiting_at_the_gate, timeout=START_TIMEOUT, message="the move waiting half-way")
        # Half-way for real: the mover's transaction has deleted the job (it holds the row), not committed.
        with pytest.raises(asyncpg.LockNotAvailableError):
            await admin.execute(f"select 1 from {JOBS} where id = $1::bigint for update nowait", job_id)

        if fault == "sigkill":
            process.send_signal(signal.SIGKILL)
        else:
            assert await admin.fetchval("select pg_terminate_backend($1::int)", backend)
        exit_code = await asyncio.wait_for(process.wait(), 30)
        assert exit_code != 0  # killed, or its move failed with the connection: it never reported a move
        await gate.execute("select pg_advisory_unlock($1::int, $2::int)", *GATE)

        async def backend_gone() -> bool:
            return not await admin.fetchval("select exists (select 1 from pg_stat_activity where pid = $1)", backend)

        # A killed client's backend runs on once the lock is free; with no COMMIT to read, it rolls back.
        await wait_for(backend_gone, timeout=30, message="the mover's backend ending")
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await gate.close()

    job = await admin.fetchrow(
        f"select attempts, max_attempts, locked_at, last_error from {JOBS} where id = $1", job_id
    )
    entries = await admin.fetchval(f"select count(*) from {DLQ}")
    assert job is not None, (
        "the dead mover's move committed (no explicit transaction?)" if entries else "the job was lost"
    )
    assert (job["attempts"], job["max_attempts"], job["locked_at"], job["last_error"]) == (2, 2, None, "failure 2")
    assert await admin.fetchval(f"select count(*) from {ERRORS} where job_id = $1", job_id) == 2
    assert entries == 0
    assert "CHAOS-DLQ-MOVED" not in stderr_path.read_text()

    await admin.execute(f"drop trigger chaos_dlq_gate on {DLQ}")
    async with asyncpg.create_pool(chaos_db, min_size=1, max_size=2) as pool:
        assert await DeadLetterMover(pool, SCHEMA).move_now() == 1
    rows = await admin.fetch(f"select job_id, errors::text as errors from {DLQ}")
    assert [row["job_id"] for row in rows] == [job_id]
    errors = rows[0]["errors"]
    assert '"failure 1"' in errors and '"failure 2"' in errors and errors.index("failure 1") < errors.index("failure 2")
    assert not await admin.fetchval(f"select exists (select 1 from {JOBS} where id = $1)", job_id)
    assert await admin.fetchval(f"select count(*) from {ERRORS}") == 0
