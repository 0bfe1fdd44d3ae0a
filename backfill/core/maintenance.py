"""Periodic upkeep that runs beside the worker loop.

For now, Graphile's last resort for locks whose owner vanished: every 8-10 minutes (jittered, so workers
started together do not sweep together), unlock jobs and queues locked more than four hours ago. Four hours
is long enough that no live Node worker still holds such a job, so the rule is safe for rows we do not own.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import asyncpg

logger = logging.getLogger("backfill.maintenance")


async def release_stale_locks_periodically(
    pool: asyncpg.Pool[Any], statement: str, interval: tuple[float, float]
) -> None:
    """Run ``statement`` (``WorkerQueries.release_stale_locks``) every ``interval`` seconds, until cancelled."""
    low, high = interval
    while True:
        await asyncio.sleep(random.uniform(low, high))
        try:
            async with pool.acquire() as connection:
                row = await connection.fetchrow(statement)
        except Exception as error:  # a failed sweep is simply tried again at the next interval
            logger.warning("releasing stale locks failed: %s", error)
            continue
        if row is not None and (row["jobs"] or row["queues"]):
            logger.warning(
                "released %s job lock(s) and %s queue lock(s) older than 4 hours", row["jobs"], row["queues"]
            )
