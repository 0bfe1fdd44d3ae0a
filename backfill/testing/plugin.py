"""The pytest plugin: fixtures for testing code that uses backfill (registered by entry point as ``backfill``).

Fixtures (see ``docs/how-to/testing.md``):

* ``backfill_database_url`` — a new database with everything backfill installs, dropped after the test (whatever
  connections remain); ``backfill_database`` is the same with its name and schema; ``backfill_databases`` (session)
  makes them;
* ``backfill_client`` (async) — a :class:`~backfill.client.BackfillClient` on it, also the default client of the
  module-level ``backfill.enqueue*`` functions for the test;
* ``backfill_run_jobs`` — ``await backfill_run_jobs()`` runs what is queued now and returns a
  :class:`~backfill.testing.RunReport`;
* ``backfill_clock`` — a :class:`~backfill.testing.QueueClock` on the test's database;
* ``backfill_job_context`` — :func:`~backfill.testing.job_context`, for unit tests of a handler (no database).

Where the server is: ``--backfill-database-url``, else the ``backfill_database_url`` ini option, else
``DATABASE_URL``; with none of them, an embedded server (``pip install 'backfill[embedded]'``) is started on first
use and stopped at the end of the session.

pytest loads this module in every project that has backfill installed, so it imports nothing of backfill until a
fixture is used, and nothing happens (no server, no connection) in a session that uses none. The one async
fixture is declared with ``pytest_asyncio.fixture``, which works in pytest-asyncio's strict and auto modes alike.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # without pytest-asyncio, pytest itself refuses the async fixture to a test that asks for it
    async_fixture = pytest.fixture  # type: ignore[assignment]

if TYPE_CHECKING:
    from backfill.client import BackfillClient
    from backfill.testing.clock import QueueClock
    from backfill.testing.context import RecordingJobContext
    from backfill.testing.databases import ThrowawayDatabase, ThrowawayDatabases
    from backfill.testing.report import RunReport
    from backfill.testing.runs import RunJobs

OPTION = "--backfill-database-url"
INI = "backfill_database_url"


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = (
        "PostgreSQL server for backfill's test fixtures (the URL of a database its user can connect to and "
        "create databases from); default: DATABASE_URL, else an embedded server"
    )
    parser.getgroup("backfill").addoption(OPTION, dest=INI, default=None, metavar="URL", help=help_text)
    parser.addini(INI, help=help_text, default="")


def server_url(config: pytest.Config) -> tuple[str | None, str]:
    """The URL of the server the fixtures use, and where it came from (for error messages); ``None`` when an
    embedded server is to be started."""
    given = config.getoption(INI)
    if given:
        return str(given), OPTION
    ini = str(config.getini(INI) or "")
    if ini:
        return ini, f"the {INI} ini option"
    return os.environ.get("DATABASE_URL") or None, "DATABASE_URL"


@pytest.fixture(scope="session")
def backfill_databases(pytestconfig: pytest.Config) -> Iterator[ThrowawayDatabases]:
    """The session's maker of throwaway databases; its server starts (or is connected to) on first use."""
    from backfill.testing.databases import ThrowawayDatabases

    url, source = server_url(pytestconfig)
    databases = ThrowawayDatabases.start(url, source=source)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def backfill_database(backfill_databases: ThrowawayDatabases) -> Iterator[ThrowawayDatabase]:
    """A new database for this test with everything backfill installs, dropped after it."""
    with backfill_databases.database() as database:
        yield database


@pytest.fixture
def backfill_database_url(backfill_database: ThrowawayDatabase) -> str:
    """The URL of this test's database (see ``backfill_database``)."""
    return backfill_database.url


@async_fixture
async def backfill_client(backfill_database: ThrowawayDatabase) -> AsyncIterator[BackfillClient]:
    """A client on this test's database, and the default client of ``backfill.enqueue*`` during the test."""
    from backfill.client import BackfillClient
    from backfill.client.default import close_default_client, set_default_client

    client = BackfillClient(backfill_database.url, schema=backfill_database.schema)
    set_default_client(client)
    try:
        yield client
    finally:
        await close_default_client()  # ours, unless the test set another: the test is over either way
        await client.close()


@pytest.fixture
def backfill_run_jobs(backfill_database: ThrowawayDatabase) -> RunJobs:
    """``await backfill_run_jobs(**options)``: :func:`~backfill.testing.run_jobs` on this test's database."""
    from backfill.testing.runs import run_jobs

    async def run(**options: Any) -> RunReport:
        return await run_jobs(backfill_database.url, schema=backfill_database.schema, **options)

    return run


@pytest.fixture
def backfill_clock(backfill_database: ThrowawayDatabase) -> QueueClock:
    """A :class:`~backfill.testing.QueueClock` on this test's database."""
    from backfill.testing.clock import QueueClock

    return QueueClock(backfill_database.url, schema=backfill_database.schema)


@pytest.fixture
def backfill_job_context() -> Callable[..., RecordingJobContext]:
    """:func:`~backfill.testing.job_context`: a context for calling a handler without a database."""
    from backfill.testing.context import job_context

    return job_context
