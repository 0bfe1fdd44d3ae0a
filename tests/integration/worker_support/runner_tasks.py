"""Tasks for the runner process tests (loaded through BACKFILL_TASK_MODULES)."""

from __future__ import annotations

from typing import Any

import backfill


@backfill.task("runner.echo")
async def echo(payload: Any) -> None:
    return None


@backfill.task("runner.broken", retry_policy="fast")
async def broken(payload: Any) -> None:
    raise RuntimeError("broken on purpose")
