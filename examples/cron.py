"""Recurring jobs: a runner scheduling from a crontab, here given inline.

In a deployment the crontab is a file named by ``BACKFILL_CRONTAB``; its format is Graphile's (docs/cron.md),
so Node and Python workers can share it and each minute still runs once. Cron runs in the first lane's
worker of a running runner (``run()``, ``serve()`` or ``async with``), not in ``run_once()``.

Run it with ``DATABASE_URL`` set: ``python -m examples.cron``. On a fresh database the first job is due at the
start of the next minute, so this waits up to a minute. If ``cron.heartbeat`` was already known and the
worker was down, ``fill=5m`` makes it catch up the missed minutes (marked ``backfilled``) at once.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import backfill
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings

CRONTAB = """
# minute hour day-of-month month day-of-week  task  ?options  {payload}
*        *    *            *     *            cron.heartbeat ?fill=5m {"service": "billing"}
0        4    *            *     *            cron.nightly_cleanup ?max=3&priority=5
"""

RAN = asyncio.Event()


@backfill.task("cron.heartbeat")
async def heartbeat(payload: dict[str, Any]) -> None:
    # Graphile adds `_cron`: the minute this run is for (use it rather than the clock: a late run still
    # knows its period) and whether it was scheduled late by `fill`.
    cron = payload["_cron"]
    print(f"heartbeat of {payload['service']} for {cron['ts']} (backfilled: {cron['backfilled']})")
    RAN.set()


@backfill.task("cron.nightly_cleanup")
async def nightly_cleanup(payload: dict[str, Any]) -> None:
    print(f"nightly cleanup for {payload['_cron']['ts']}")


async def main() -> int:
    # A malformed crontab line makes the start fail with a ConfigurationError naming the line and the reason.
    runner = WorkerRunner(BackfillSettings.load(), crontab=CRONTAB)
    async with runner:
        print(f"runner started at {datetime.now(UTC):%H:%M:%S}Z; waiting for the first heartbeat")
        try:
            await asyncio.wait_for(RAN.wait(), timeout=75)
        except TimeoutError:
            print("no heartbeat ran within 75 s")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
