"""The command line run in-process against the test database: the ``cli`` fixture (tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from backfill.cli import EXIT_OK, main


class Cli:
    """Runs ``backfill ARGS -c DATABASE_URL`` in-process and returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], database_url: str) -> None:
        self.capsys = capsys
        self.database_url = database_url

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()  # drop anything printed before
        code = await asyncio.to_thread(main, [*args, "-c", self.database_url])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    async def json(self, *args: str) -> Any:
        code, out, err = await self(*args, "--json")
        assert code == EXIT_OK, err
        return json.loads(out)
