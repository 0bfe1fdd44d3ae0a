"""Fixtures shared by every suite: a PostgreSQL server per session, a fresh database per test."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from backfill.core.migrations.graphile import migrate
from tests.support.postgres import PostgresServer, start_server, unique_database_name


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


@pytest.fixture
async def empty_database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test (whatever connections remain)."""
    name = unique_database_name()
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    yield postgres_server.dsn_for(name)
    admin = await asyncpg.connect(postgres_server.admin_dsn)
    try:
        await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(empty_database_url: str) -> str:
    """A new database with the Graphile schema installed by backfill."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return empty_database_url


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
