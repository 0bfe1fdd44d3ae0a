"""Bulk actions: ``dlq requeue|delete`` and ``jobs complete|fail|reschedule`` in batches, each batch its own
transaction, with a summary instead of every id (ids stay in ``--json``), and ``--all`` confirmed.

Run in-process through ``backfill.cli.main`` (stdin and stderr are not terminals here: pytest captures them);
test_bulk_terminal.py runs real processes on a pseudo-terminal.
"""

from __future__ import annotations

import json
import time
from typing import Any

import asyncpg
import pytest

from backfill.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from backfill.core.enqueue import add_job
from backfill.core.errors import ConfigurationError
from backfill.dlq import DeadLetterQueue
from tests.integration.test_dlq_cli import Cli
from tests.integration.test_dlq_support import DLQ, JOBS, installed

__all__ = ["make_entries"]

# The transaction ids that wrote each row: a trigger on each table records txid_current() per row, so a test
# can count the transactions a command used and the rows each one wrote.
_SEEN = "public.bulk_seen_xids"


async def make_entries(pool: asyncpg.Pool[Any], count: int, *, task: str = "bulk") -> list[int]:
    """``count`` dead entries of ``task`` in one INSERT … SELECT (fast enough for 100,000); their ids."""
    rows = await pool.fetch(
        f"""
        insert into {DLQ} (job_id, task_identifier, payload, attempts, max_attempts, last_error, reason,
                           created_at, run_at, failed_at)
        select 1000000 + g, $2::text, json_build_object('n', g), 3, 3, 'boom', 'attempts_exhausted',
               now(), now(), now()
          from generate_series(1, $1::int) as g
        returning id
        """,
        count,
        task,
    )
    return sorted(row["id"] for row in rows)


async def record_transactions(pool: asyncpg.Pool[Any], table: str, *, events: str = "insert or update") -> None:
    """Record, for every row of ``table`` a statement writes, the id of the transaction writing it."""
    await pool.execute(
        f"""
        create table if not exists {_SEEN} (xid bigint not null);
        create or replace function public.bulk_seen() returns trigger language plpgsql as $$
          begin insert into {_SEEN} values (txid_current()); return null; end $$;
        create trigger bulk_seen after {events} on {table} for each row execute function public.bulk_seen();
        """
    )


async def rows_per_transaction(pool: asyncpg.Pool[Any]) -> list[int]:
    rows = await pool.fetch(f"select count(*) as n from {_SEEN} group by xid order by min(xid)")
    return [row["n"] for row in rows]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    return Cli(capsys, database_url)


@pytest.fixture
async def dlq_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return await installed(pool)


async def test_dlq_requeue_by_filter_commits_each_batch_in_its_own_transaction(
    cli: Cli, dlq_pool: asyncpg.Pool[Any]
) -> None:
    await make_entries(dlq_pool, 2500)
    await record_transactions(dlq_pool, JOBS, events="insert")

    code, out, err = await cli("dlq", "requeue", "--task", "bulk", "--batch-size", "1000")

    assert code == EXIT_OK, err
    assert out.strip() == "requeued 2500 entries in 3 batches"
    assert await rows_per_transaction(dlq_pool) == [1000, 1000, 500]
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 2500
    assert await dlq_pool.fetchval(f"select count(*) from {DLQ} where state = 'requeued'") == 2500


async def test_dlq_requeue_and_delete_by_ids_are_batched_too(cli: Cli, dlq_pool: asyncpg.Pool[Any]) -> None:
    ids = await make_entries(dlq_pool, 25)
    await record_transactions(dlq_pool, DLQ, events="delete")

    code, out, err = await cli("dlq", "delete", *map(str, ids[:12]), "--batch-size", "5")

    assert code == EXIT_OK, err
    assert out.strip() == "deleted 12 entries in 3 batches"
    assert await rows_per_transaction(dlq_pool) == [5, 5, 2]

    deleted = await cli.json("dlq", "delete", "--all", "--yes", "--batch-size", "10")
    assert deleted["deleted"] == ids[12:] and deleted["batches"] == 2 and deleted["finished"] is True
    assert await rows_per_transaction(dlq_pool) == [5, 5, 2, 10, 3]


async def test_dlq_requeue_of_100_000_entries_is_many_short_transactions_within_a_bound(
    cli: Cli, dlq_pool: asyncpg.Pool[Any]
) -> None:
    await make_entries(dlq_pool, 100_000)
    # Statement level (a row trigger on 100,000 rows would cost more than the requeue): one row per mark.
    await dlq_pool.execute(
        f"""
        create table {_SEEN} (xid bigint not null, n bigint not null);
        create function public.bulk_marked() returns trigger language plpgsql as $$
          begin insert into {_SEEN} select txid_current(), count(*) from marked; return null; end $$;
        create trigger bulk_marked after update on {DLQ} referencing new table as marked
          for each statement execute function public.bulk_marked();
        """
    )

    started = time.monotonic()
    code, out, err = await cli("dlq", "requeue", "--all", "--yes")
    elapsed = time.monotonic() - started

    assert code == EXIT_OK, err
    assert out.strip() == "requeued 100000 entries in 100 batches"
    sizes = [row["n"] for row in await dlq_pool.fetch(f"select xid, sum(n) as n from {_SEEN} group by xid")]
    assert len(sizes) == 100 and max(sizes) == 1000
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 100_000
    assert elapsed < 60, f"took {elapsed:.1f}s"


async def test_a_failure_midway_says_how_much_was_done_and_a_rerun_continues(
    cli: Cli, dlq_pool: asyncpg.Pool[Any]
) -> None:
    ids = await make_entries(dlq_pool, 30)
    # Entry 25 (the third batch of 10) cannot become a job: Graphile's add_jobs fails on it.
    await dlq_pool.execute(f"update {DLQ} set payload = '{{\"poison\": true}}' where id = $1", ids[24])
    await dlq_pool.execute(
        f"""
        create function public.bulk_poison() returns trigger language plpgsql as $$
          begin
            if new.payload::jsonb ? 'poison' then raise exception 'poisoned payload'; end if;
            return new;
          end $$;
        create trigger bulk_poison before insert on {JOBS} for each row execute function public.bulk_poison();
        """
    )

    code, out, err = await cli("dlq", "requeue", "--task", "bulk", "--batch-size", "10")

    assert code == EXIT_FAILURE
    assert "requeued 20 of 30 entries in 2 batches before the failure" in err
    assert "poisoned payload" in err and "run the same command again" in err
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 20

    await dlq_pool.execute(f"drop trigger bulk_poison on {JOBS}")
    code, out, err = await cli("dlq", "requeue", "--task", "bulk", "--batch-size", "10")

    assert code == EXIT_OK, err
    assert out.startswith("requeued 10 entries: ")  # only the third batch was left: nothing twice
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 30
    assert await dlq_pool.fetchval(f"select count(distinct requeued_job_id) from {DLQ}") == 30


async def test_the_summary_lists_few_ids_and_json_keeps_every_one(cli: Cli, dlq_pool: asyncpg.Pool[Any]) -> None:
    few = await make_entries(dlq_pool, 3, task="few")
    many = await make_entries(dlq_pool, 40, task="many")

    code, out, err = await cli("dlq", "requeue", "--task", "few")
    assert code == EXIT_OK, err
    jobs = [await dlq_pool.fetchval(f"select requeued_job_id from {DLQ} where id = $1", i) for i in few]
    assert out.strip() == "requeued 3 entries: " + ", ".join(f"{e} as job {j}" for e, j in zip(few, jobs, strict=True))

    code, out, err = await cli("dlq", "requeue", "--task", "many", "--dry-run", "--batch-size", "15")
    assert code == EXIT_OK, err
    assert out.splitlines() == ["dry run: nothing was changed", "would requeue 40 entries in 3 batches"]

    result = await cli.json("dlq", "requeue", "--task", "many", "--batch-size", "15")
    assert [r["entry_id"] for r in result["requeued"]] == many
    assert (result["batches"], result["finished"], result["dry_run"]) == (3, True, False)


async def test_all_without_a_terminal_is_refused_without_yes_and_changes_nothing(
    cli: Cli, dlq_pool: asyncpg.Pool[Any]
) -> None:
    await make_entries(dlq_pool, 5)

    for command in ("requeue", "delete"):
        code, out, err = await cli("dlq", command, "--all")
        assert (code, out) == (EXIT_USAGE, ""), err
        assert "--all" in err and "--yes" in err and "terminal" in err
    assert await dlq_pool.fetchval(f"select count(*) from {DLQ} where state = 'dead'") == 5
    assert await dlq_pool.fetchval(f"select count(*) from {JOBS}") == 0

    code, out, err = await cli("dlq", "requeue", "--all", "--dry-run")  # a dry run changes nothing: no question
    assert code == EXIT_OK and "would requeue 5 entries" in out


async def test_jobs_complete_by_filter_in_batches_leaves_locked_jobs_alone(cli: Cli, pool: asyncpg.Pool[Any]) -> None:
    mail = [(await add_job(pool, "mail")).id for _ in range(7)]
    other = await add_job(pool, "sms")
    await pool.execute(f"update {JOBS} set locked_by = 'w1', locked_at = now() where id = $1", mail[3])
    await record_transactions(pool, JOBS, events="delete")

    code, out, err = await cli("jobs", "complete", "--task", "mail", "--batch-size", "3")

    assert code == EXIT_OK, err
    assert out.strip() == "completed 6 jobs in 3 batches: " + ", ".join(str(i) for i in mail if i != mail[3])
    assert f"not completed: 1 job (locked by a worker): {mail[3]}" in err
    assert await rows_per_transaction(pool) == [3, 2, 1]
    remaining = await pool.fetch(f"select id from {JOBS} order by id")
    assert [row["id"] for row in remaining] == [mail[3], other.id]


async def test_jobs_fail_and_reschedule_take_filters_or_all_and_json_lists_the_jobs(
    cli: Cli, pool: asyncpg.Pool[Any]
) -> None:
    ids = [(await add_job(pool, "mail", queue_name="q1")).id for _ in range(4)]
    await add_job(pool, "mail")

    failed = await cli.json("jobs", "fail", "--queue", "q1", "--reason", "bad batch", "--batch-size", "2")
    assert [job["id"] for job in failed] == ids and {job["last_error"] for job in failed} == {"bad batch"}

    code, out, err = await cli("jobs", "reschedule", "--state", "failed", "--attempts", "0", "--dry-run")
    assert code == EXIT_OK, err
    assert out.splitlines() == ["dry run: nothing was changed", "would reschedule 4 jobs"]

    code, out, err = await cli("jobs", "reschedule", "--all", "--priority", "5")
    assert code == EXIT_USAGE and "--yes" in err
    code, out, err = await cli("jobs", "reschedule", "--all", "--yes", "--priority", "5")
    assert code == EXIT_OK and out.startswith("rescheduled 5 jobs"), err
    assert await pool.fetchval(f"select count(*) from {JOBS} where priority = 5") == 5

    code, out, err = await cli("jobs", "complete")
    assert code == EXIT_USAGE and "--all" in err
    code, out, err = await cli("jobs", "complete", str(ids[0]), "--task", "mail")
    assert code == EXIT_USAGE and "not both" in err
    assert json.loads((await cli("jobs", "complete", "--task", "nothing", "--json"))[1]) == []


async def test_the_api_yields_each_batch_once_committed_and_checks_the_batch_size(
    cli: Cli, dlq_pool: asyncpg.Pool[Any]
) -> None:
    ids = await make_entries(dlq_pool, 7)
    async with DeadLetterQueue(dlq_pool) as dlq:
        seen: list[tuple[list[int], int]] = []
        async for batch in dlq.requeue_batches(all=True, batch_size=3):
            # Committed before the next batch starts: another connection already sees this batch's jobs.
            seen.append(([r.entry_id for r in batch.requeued], await dlq_pool.fetchval(f"select count(*) from {JOBS}")))
        assert seen == [(ids[0:3], 3), (ids[3:6], 6), (ids[6:], 7)]

        with pytest.raises(ConfigurationError, match="batch_size"):
            async for _ in dlq.delete_batches(all=True, batch_size=0):
                pass
        deleted = [batch.deleted async for batch in dlq.delete_batches(ids[:5], batch_size=2)]
        assert deleted == [tuple(ids[0:2]), tuple(ids[2:4]), (ids[4],)]

    code, _, err = await cli("dlq", "requeue", "--all", "--yes", "--batch-size", "0")
    assert code == EXIT_USAGE and "--batch-size" in err
