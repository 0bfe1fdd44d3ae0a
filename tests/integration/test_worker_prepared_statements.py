"""prepared_statements=False (for PgBouncer in transaction mode) really leaves no named statements behind."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from backfill.core.enqueue import add_job
from backfill.core.run.context import JobContext
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])
async def test_the_worker_pool_prepares_named_statements_only_when_asked(
    database_url: str, conn: asyncpg.Connection[Any], prepared: bool
) -> None:
    seen: list[list[str]] = []
    registry = TaskRegistry()

    @registry.task("inspect")
    async def inspect(payload: dict[str, Any], ctx: JobContext) -> None:
        async with ctx.connection() as connection:
            # A parametrised query like every one the worker runs; then what this session has kept.
            await connection.fetchval("select $1::int + 1", 41)
            names = await connection.fetch("select name from pg_prepared_statements")
        seen.append([row["name"] for row in names])

    await add_job(conn, "inspect", {})
    # A pool the worker creates itself from the DSN: the option only governs that pool.
    worker = Worker(database_url, tasks=registry, options=fast_options(prepared_statements=prepared))
    summary = await worker.run_once()

    assert summary.succeeded == 1
    [names] = seen
    if prepared:
        assert names, "with prepared statements on, asyncpg keeps named statements in the session"
    else:
        assert names == []
