"""Fixtures shared by the integration tests (the database fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.integration.worker_support.cli import Cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], database_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``backfill ARGS -c <the test database>`` run in-process: ``await cli("jobs", "list")``."""
    monkeypatch.delenv("GRAPHILE_WORKER_SCHEMA", raising=False)
    return Cli(capsys, database_url)
