"""Fixtures shared by every suite: a PostgreSQL server per session, a fresh database per test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from backfill.core.schema import SchemaName
from tests.support.postgres import PostgresServer, new_database, start_server
from tests.support.templates import TemplateDatabases


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Put the root logger back after each test. The CLI run in-process, and the runner's from_env, configure
    logging as a process they own would (a root handler on the stderr of the moment, the root level, warnings
    captured); left in place, later tests would log into a closed capture stream and at another level."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        # pytest's own capture handlers come and go with each phase of the test: those are pytest's business.
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_server()
    yield server
    if server.embedded is not None:
        server.embedded.stop()


@pytest.fixture(scope="session")
def template_databases(postgres_server: PostgresServer) -> Iterator[TemplateDatabases]:
    with TemplateDatabases.opened(postgres_server) as templates:
        yield templates


@pytest.fixture
async def empty_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test (whatever connections remain). For the tests of
    what installs a schema (migrations, upgrades, Node's installer, a fresh schema next to another)."""
    async with new_database(postgres_server) as url:
        yield url


@pytest.fixture
async def database_url(postgres_server: PostgresServer, template_databases: TemplateDatabases) -> AsyncIterator[str]:
    """A new database with the Graphile schema installed by backfill, dropped after the test: a copy of a template
    where :func:`migrate` ran, in the schema it would choose now (``GRAPHILE_WORKER_SCHEMA`` or the default).
    Not the database of ``empty_database_url``: a test asking for both gets two."""
    template = await template_databases.template_for(SchemaName.coerce(None))
    async with new_database(postgres_server, template=template) as url:
        yield url


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=10) as created:
        yield created


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
