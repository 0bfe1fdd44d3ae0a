"""Workers can run as an application role without CREATE rights, once an owner has migrated the schema."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from backfill.client.async_client import BackfillClient
from backfill.core.tasks import TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
async def app_role_url(database_url: str, conn: asyncpg.Connection[Any]) -> AsyncIterator[str]:
    """A login role with row privileges on backfill's and Graphile's objects and nothing else: like every role
    but the database's owner, it may not create schemas in the database."""
    # An owner migrates everything first (what `backfill migrate` in a deploy step does).
    await BackfillClient(database_url).migrate()
    role = f"bf_app_{uuid.uuid4().hex[:8]}"
    # Graphile enables row-level security on its tables with no policies, so only their owner (or a role that
    # bypasses RLS, or a member of the owner's role) can use them at all; an application role is one of those.
    await conn.execute(f"create role {role} login bypassrls")
    for statement in (
        f"grant usage on schema graphile_worker to {role}",
        f"grant select, insert, update, delete on all tables in schema graphile_worker to {role}",
        f"grant usage, select on all sequences in schema graphile_worker to {role}",
        f"grant execute on all functions in schema graphile_worker to {role}",
        f"revoke create on schema public from {role}",
    ):
        await conn.execute(statement)
    yield _as_user(database_url, role)
    await conn.execute(f"drop owned by {role}")
    await conn.execute(f"drop role {role}")


async def test_a_runner_starts_and_works_as_a_role_without_create_rights(
    app_role_url: str, pool: asyncpg.Pool[Any]
) -> None:
    registry = TaskRegistry()
    ran: list[int] = []

    @registry.task("app.work")
    async def work(payload: Any) -> None:
        ran.append(payload["n"])

    async with BackfillClient(app_role_url) as client:
        await client.enqueue_fast("app.work", {"n": 1})
        await client.enqueue_bulk("app.work", {"n": 2})
    settings = BackfillSettings.load(env_file=None, database_url=app_role_url)
    summary = await WorkerRunner(settings, tasks=registry).run_once()

    assert sorted(ran) == [1, 2]
    assert summary.succeeded == 2
    assert await pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0
