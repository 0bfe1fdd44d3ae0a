"""Fixtures of the chaos suite: a database with the ledger, and a fleet of worker processes that is always
cleaned up (SIGKILLed if still alive) when the test ends, passed or failed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.chaos.harness import SCALE, Fleet, create_ledger

# pyproject's 120 s per test suits scale 1; a soak (BACKFILL_CHAOS_SCALE=10) gets proportionally longer.
_TIMEOUT = 120.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: real worker processes under injected faults, checked against a ledger (tests/chaos)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if SCALE > 1:
        for item in items:
            if item.get_closest_marker("chaos") is not None:
                item.add_marker(pytest.mark.timeout(_TIMEOUT * SCALE))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def chaos_db(database_url: str) -> str:
    """A fresh database with the Graphile schema and the chaos ledger tables."""
    connection = await asyncpg.connect(database_url)
    try:
        await create_ledger(connection)
    finally:
        await connection.close()
    return database_url


@pytest.fixture
async def admin(chaos_db: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The test's own connection to the chaos database (never one of the workers')."""
    connection = await asyncpg.connect(chaos_db)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def fleet(chaos_db: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    workers = Fleet(chaos_db, tmp_path)
    try:
        yield workers
    finally:
        await workers.cleanup()
        if request.node.stash.get(_FAILED, False):
            print(workers.stderr_tails())  # the workers' logs, shown with the failure
