"""The fetch filter's clauses, the only SQL that Python composes: every combination prepares, with the parameters
Claims passes in the order it passes them."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import migrate_own
from backfill.core.run.job_slice import JobSlice
from backfill.core.run.queries import (
    FETCH_FILTER_SLOT,
    FetchSql,
    WorkerQueries,
    fetch_filter_arguments,
    with_fetch_filter,
)
from backfill.core.schema import SchemaName

ODD_SCHEMA = SchemaName('My "Odd" Schema')
FILTERS = [
    JobSlice(min_priority, max_priority, ("x",) if forbidden else (), ("lane",) if required else ())
    for min_priority, max_priority, forbidden, required in itertools.product(
        (None, -3), (None, 7), (False, True), (False, True)
    )
]


@pytest.fixture
async def connection(empty_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(empty_database_url)
    await migrate(connection, ODD_SCHEMA)
    await migrate_own(connection, ODD_SCHEMA)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.mark.parametrize("fetch_filter", FILTERS, ids=str)
async def test_the_fetch_and_its_check_prepare_for_every_filter(
    connection: asyncpg.Connection[Any], fetch_filter: JobSlice
) -> None:
    queries = WorkerQueries.for_schema(ODD_SCHEMA, fetch_filter)
    flags = fetch_filter_arguments(
        ["forbidden"] if fetch_filter.forbidden_flags else [], ["required"] if fetch_filter.required_flags else []
    )
    for statement, nothing in ((queries.fetch_jobs, []), (queries.runnable_exists, [(False,)])):
        prepared = await connection.prepare(statement)
        # $1 worker id, $2 identifiers, $3 limit, then one text[] per flag condition the filter has.
        types = [parameter.name for parameter in prepared.get_parameters()]
        assert types == ["text", "text[]", "int4", *["text[]"] * len(flags)]
        # And it runs with exactly the arguments Claims passes (nothing to claim in an empty schema).
        assert [tuple(row) for row in await prepared.fetch("w", ["task"], 1, *flags)] == nothing
    if fetch_filter.min_priority is not None:
        assert f"jobs.priority >= {fetch_filter.min_priority}" in queries.fetch_jobs


async def test_the_flag_arguments_follow_the_clauses_numbering(connection: asyncpg.Connection[Any]) -> None:
    """With only required flags, they are $4, not $5: a job carrying one is found by the check."""
    await connection.execute(f"select {ODD_SCHEMA.quoted}.add_job('task', flags => array['lane'])")
    queries = WorkerQueries.for_schema(ODD_SCHEMA, JobSlice(required_flags=["lane"]))
    arguments = fetch_filter_arguments([], ["lane"])
    assert await connection.fetchval(queries.runnable_exists, "w", ["task"], 1, *arguments) is True
    assert (
        await connection.fetchval(queries.runnable_exists, "w", ["task"], 1, *fetch_filter_arguments([], ["x"]))
        is False
    )
    forbidding = WorkerQueries.for_schema(ODD_SCHEMA, JobSlice(forbidden_flags=["lane"], required_flags=["lane"]))
    both = fetch_filter_arguments(["lane"], ["lane"])
    assert await connection.fetchval(forbidding.runnable_exists, "w", ["task"], 1, *both) is False


def test_without_a_filter_the_statements_are_the_files() -> None:
    fetch = FetchSql.for_schema(ODD_SCHEMA)
    queries = WorkerQueries.for_schema(ODD_SCHEMA)
    assert queries.fetch_jobs == fetch.fetch_jobs
    assert queries.runnable_exists == fetch.runnable_exists


def test_a_statement_without_the_slot_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch filter"):
        with_fetch_filter("select 1", JobSlice(min_priority=1))
    assert FETCH_FILTER_SLOT in FetchSql.for_schema(ODD_SCHEMA).fetch_jobs
