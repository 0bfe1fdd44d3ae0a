"""DeadLetterQueue's reading and tidying side: get, list (filters, stable pages), stats, delete, annotate."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.errors import ConfigurationError, DatabaseError
from backfill.dlq import CountBy, DeadLetterFilter, DeadLetterMover, DeadLetterQueue, EntryState
from tests.integration.test_dlq_support import DLQ, SCHEMA, installed, make_dead


@pytest.fixture
async def dlq_pool(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    return await installed(pool)


async def move(pool: asyncpg.Pool[Any]) -> int:
    return await DeadLetterMover(pool, SCHEMA).move_now()


async def entry_of(pool: asyncpg.Pool[Any], job_id: int) -> int:
    return int(await pool.fetchval(f"select id from {DLQ} where job_id = $1::bigint", job_id))


async def test_get_returns_one_entry_or_none_and_the_dsn_form_owns_its_pool(
    database_url: str, dlq_pool: asyncpg.Pool[Any]
) -> None:
    job_id = await make_dead(dlq_pool, "mail", ["first", "second"], payload='{"to": "a@example.com"}')
    await move(dlq_pool)
    entry_id = await entry_of(dlq_pool, job_id)

    async with DeadLetterQueue(database_url) as dlq:
        entry = await dlq.get(entry_id)
        assert await dlq.get(entry_id + 1000) is None
    assert entry is not None
    assert (entry.job_id, entry.payload, [e.error for e in entry.errors]) == (
        job_id,
        {"to": "a@example.com"},
        ["first", "second"],
    )

    async with DeadLetterQueue(dlq_pool) as dlq:
        assert (await dlq.get(entry_id)) == entry
    assert await dlq_pool.fetchval("select 1") == 1  # the caller's pool is still open


async def test_filters_match_task_queue_time_range_error_text_and_state(dlq_pool: asyncpg.Pool[Any]) -> None:
    smtp = await make_dead(dlq_pool, "mail", ["Timeout talking to SMTP", "refused"], queue_name="q1")
    sms = await make_dead(dlq_pool, "sms", ["quota exceeded (100%)"])
    other = await make_dead(dlq_pool, "mail", ["x"], queue_name="q2")
    await move(dlq_pool)
    ids = {job: await entry_of(dlq_pool, job) for job in (smtp, sms, other)}

    async with DeadLetterQueue(dlq_pool) as dlq:
        await dlq.requeue([ids[other]])
        sms_entry = await dlq.get(ids[sms])
        assert sms_entry is not None

        async def matching(**fields: Any) -> set[int]:
            return {entry.id for entry in (await dlq.list(DeadLetterFilter(**fields))).entries}

        assert await matching() == set(ids.values())
        assert await matching(task="mail") == {ids[smtp], ids[other]}
        assert await matching(queue="q1") == {ids[smtp]}
        assert await matching(error="TIMEOUT") == {ids[smtp]}  # an earlier attempt's error, any case
        assert await matching(error="(100%)") == {ids[sms]}  # % is a character, not a wildcard
        assert await matching(error="%") == {ids[sms]}
        assert await matching(state="requeued") == {ids[other]}
        assert await matching(state=EntryState.DEAD, task="mail") == {ids[smtp]}
        at = sms_entry.failed_at
        assert await matching(since=at, until=at + timedelta(microseconds=1)) == {ids[sms]}
        assert await matching(until=at) == {ids[smtp]}
        assert await matching(since=at + timedelta(microseconds=1)) == {ids[other]}

    with pytest.raises(ConfigurationError, match="state"):
        DeadLetterFilter(state="gone")
    with pytest.raises(ConfigurationError, match="since"):
        DeadLetterFilter(since=at.replace(tzinfo=None))


async def test_the_exception_type_filter_tells_types_apart_for_list_count_and_requeue(
    dlq_pool: asyncpg.Pool[Any],
) -> None:
    # A PermanentFailure stores its message alone: the error-text filter cannot find it by its type's name.
    permanent = "backfill.core.errors.PermanentFailure"
    upstream = await make_dead(dlq_pool, "mail", ["card declined"], permanent=True, exception_type=permanent)
    timeout = await make_dead(dlq_pool, "mail", ["TimeoutError: smtp"], exception_type="TimeoutError")
    timeout_sms = await make_dead(dlq_pool, "sms", ["TimeoutError: gateway"], exception_type="TimeoutError")
    node = await make_dead(dlq_pool, "mail", ["TimeoutError: from a Node worker"])  # no type recorded
    await move(dlq_pool)
    ids = {job: await entry_of(dlq_pool, job) for job in (upstream, timeout, timeout_sms, node)}

    async with DeadLetterQueue(dlq_pool) as dlq:

        async def matching(**fields: Any) -> set[int]:
            return {entry.id for entry in (await dlq.list(DeadLetterFilter(**fields))).entries}

        assert await matching(error="PermanentFailure") == set()
        assert await matching(exception_type=permanent) == {ids[upstream]}
        assert await matching(exception_type="TimeoutError") == {ids[timeout], ids[timeout_sms]}
        assert await matching(error="TimeoutError") == {ids[timeout], ids[timeout_sms], ids[node]}
        assert await matching(exception_type="TimeoutError", task="mail") == {ids[timeout]}
        # Exact and case-sensitive, as Python names types; "(unknown)" is the stats' label, not a type.
        assert await matching(exception_type="timeouterror") == set()
        assert await matching(exception_type="Timeout") == set()
        assert await matching(exception_type="(unknown)") == set()
        page = await dlq.list(DeadLetterFilter(exception_type="TimeoutError"), limit=1)
        rest = await dlq.list(DeadLetterFilter(exception_type="TimeoutError"), limit=1, after=page.next_cursor)
        assert {page.entries[0].id, rest.entries[0].id} == {ids[timeout], ids[timeout_sms]}
        assert rest.next_cursor is None

        assert await dlq.count(DeadLetterFilter(exception_type="TimeoutError")) == 2
        assert await dlq.count(DeadLetterFilter(exception_type=permanent), dead_only=True) == 1
        assert await dlq.count(DeadLetterFilter(exception_type="KeyError")) == 0

        preview = await dlq.requeue(filter=DeadLetterFilter(exception_type="TimeoutError"), dry_run=True)
        assert preview.dry_run and {r.entry_id for r in preview.requeued} == {ids[timeout], ids[timeout_sms]}
        batched = [
            batch
            async for batch in dlq.requeue_batches(
                filter=DeadLetterFilter(exception_type="TimeoutError"), dry_run=True, batch_size=1
            )
        ]
        assert [r.entry_id for batch in batched for r in batch.requeued] == sorted([ids[timeout], ids[timeout_sms]])
        assert await dlq_pool.fetchval(f"select count(*) from {DLQ} where state = 'dead'") == 4

        done = await dlq.requeue(filter=DeadLetterFilter(exception_type=permanent))
        assert [r.entry_id for r in done.requeued] == [ids[upstream]]
        # Requeued, it is no longer dead: a requeue by the same filter finds nothing, a listing still does.
        assert await dlq.count(DeadLetterFilter(exception_type=permanent), dead_only=True) == 0
        assert await matching(exception_type=permanent, state="requeued") == {ids[upstream]}

        gone = await dlq.delete(filter=DeadLetterFilter(exception_type="TimeoutError", task="sms"), dry_run=True)
        assert gone.deleted == (ids[timeout_sms],)
        gone = await dlq.delete(filter=DeadLetterFilter(exception_type="TimeoutError", task="sms"))
        assert gone.deleted == (ids[timeout_sms],)
        assert await matching() == {ids[upstream], ids[timeout], ids[node]}


def test_the_exception_type_filter_is_checked_and_counts_as_a_condition() -> None:
    assert not DeadLetterFilter(exception_type="KeyError").is_empty
    assert DeadLetterFilter().is_empty
    assert DeadLetterFilter(exception_type="x" * 1000).exception_type == "x" * 1000
    for bad in ("", "x" * 1001, 42, "Key\x00Error"):
        with pytest.raises(ConfigurationError, match="filter exception_type"):
            DeadLetterFilter(exception_type=bad)  # type: ignore[arg-type]


async def test_pages_neither_repeat_nor_skip_while_new_entries_arrive(dlq_pool: asyncpg.Pool[Any]) -> None:
    for n in range(7):
        await make_dead(dlq_pool, "mail", [f"error {n}"])
    await move(dlq_pool)
    original = {row["id"] for row in await dlq_pool.fetch(f"select id from {DLQ}")}

    async with DeadLetterQueue(dlq_pool) as dlq:
        first = await dlq.list(limit=3)
        for n in range(3):  # newer failures arrive between pages
            await make_dead(dlq_pool, "mail", [f"late {n}"])
        await move(dlq_pool)
        assert first.next_cursor is not None
        second = await dlq.list(limit=3, after=first.next_cursor)
        assert second.next_cursor is not None
        third = await dlq.list(limit=3, after=second.next_cursor)
        with pytest.raises(ConfigurationError, match="cursor"):
            await dlq.list(after="yesterday")

    seen = [entry.id for page in (first, second, third) for entry in page.entries]
    assert len(seen) == len(set(seen)) == 7 and set(seen) == original
    assert third.next_cursor is None
    failed_at = [entry.failed_at for page in (first, second, third) for entry in page.entries]
    assert failed_at == sorted(failed_at, reverse=True)  # newest failure first


async def test_stats_count_by_task_reason_error_first_line_and_exception_type(dlq_pool: asyncpg.Pool[Any]) -> None:
    await make_dead(dlq_pool, "mail", ["a", "Connection refused\n  at line 3"], exception_type="ConnectionRefusedError")
    await make_dead(dlq_pool, "mail", ["Connection refused\n  at line 9"], exception_type="ConnectionRefusedError")
    await make_dead(dlq_pool, "sms", ["bad number"], permanent=True)
    await move(dlq_pool)

    async with DeadLetterQueue(dlq_pool) as dlq:
        requeued = await dlq.requeue(filter=DeadLetterFilter(task="sms"))
        stats = await dlq.stats()

    assert len(requeued.requeued) == 1
    assert (stats.total, stats.dead, stats.requeued) == (3, 2, 1)
    assert stats.by_task == (CountBy("mail", 2), CountBy("sms", 1))
    assert stats.by_reason == (CountBy("attempts_exhausted", 2), CountBy("permanent_failure", 1))
    assert stats.top_errors == (CountBy("Connection refused", 2), CountBy("bad number", 1))
    assert stats.by_exception_type == (CountBy("ConnectionRefusedError", 2), CountBy("(unknown)", 1))
    assert stats.oldest_failed_at is not None and stats.newest_failed_at is not None
    assert stats.oldest_failed_at < stats.newest_failed_at


async def test_delete_by_ids_and_filter_with_dry_run_and_an_explicit_all(dlq_pool: asyncpg.Pool[Any]) -> None:
    jobs = [await make_dead(dlq_pool, task) for task in ("mail", "mail", "sms", "push")]
    await move(dlq_pool)
    ids = [await entry_of(dlq_pool, job) for job in jobs]

    async with DeadLetterQueue(dlq_pool) as dlq:
        preview = await dlq.delete([ids[0], 999_999], dry_run=True)
        assert (preview.deleted, preview.missing, preview.dry_run) == ((ids[0],), (999_999,), True)
        assert await dlq_pool.fetchval(f"select count(*) from {DLQ}") == 4

        done = await dlq.delete([ids[0], 999_999])
        assert (done.deleted, done.missing) == ((ids[0],), (999_999,))

        with pytest.raises(ConfigurationError, match="all=True"):
            await dlq.delete(filter=DeadLetterFilter())
        with pytest.raises(ConfigurationError, match="not both"):
            await dlq.delete([ids[1]], filter=DeadLetterFilter(task="mail"))
        assert (await dlq.delete(filter=DeadLetterFilter(task="mail"))).deleted == (ids[1],)
        assert (await dlq.delete(all=True)).deleted == (ids[2], ids[3])
    assert await dlq_pool.fetchval(f"select count(*) from {DLQ}") == 0


async def test_annotate_appends_stamped_notes(dlq_pool: asyncpg.Pool[Any]) -> None:
    job_id = await make_dead(dlq_pool, "mail")
    await move(dlq_pool)
    entry_id = await entry_of(dlq_pool, job_id)

    async with DeadLetterQueue(dlq_pool) as dlq:
        await dlq.annotate(entry_id, "looked at it")
        entry = await dlq.annotate(entry_id, "waiting for the SMTP fix")
        assert await dlq.annotate(entry_id + 1000, "nobody") is None
        with pytest.raises(ConfigurationError, match="note"):
            await dlq.annotate(entry_id, "  ")

    assert entry is not None and entry.notes is not None
    lines = entry.notes.splitlines()
    assert [line.split("Z ", 1)[1] for line in lines] == ["looked at it", "waiting for the SMTP fix"]


async def test_a_missing_table_is_a_database_error_that_says_how_to_install_it(pool: asyncpg.Pool[Any]) -> None:
    async with DeadLetterQueue(pool) as dlq:
        with pytest.raises(DatabaseError, match=r"dlq_schema\.sql"):
            await dlq.list()
        assert await dlq.migrate() == [1, 2, 3]
        assert (await dlq.list()).entries == ()


def test_the_public_surface_is_sorted_and_the_core_imports_nothing_of_it() -> None:
    import backfill.dlq

    names = list(backfill.dlq.__all__)
    assert names == sorted(names) and all(hasattr(backfill.dlq, name) for name in names)
    imported: set[str] = set()
    for path in Path(backfill.core.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
    assert not [name for name in imported if name.startswith("backfill.dlq")]  # a migration names it as data
