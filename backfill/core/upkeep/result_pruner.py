"""Pruning of kept job outcomes whose retention has passed.

Every worker with upkeep on runs it about once a minute (±20%, the services' usual jitter), and each run deletes
expired rows of ``backfill_job_results`` in batches of :data:`PRUNE_BATCH` until a batch comes back short, so a
backlog (a day of results expiring at once) is cleared in one run without one long transaction holding locks on
all of it. An outcome may thus outlive its retention by about a minute; readers do not filter on ``expires_at``,
so what a caller sees does not depend on whether the pruner has run yet.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.core.upkeep.periodic import Interval, PeriodicService

logger = logging.getLogger("backfill.maintenance")

PRUNE_INTERVAL_SECONDS = 60.0
PRUNE_BATCH = 1000


class ResultSql(Statements, file=("backfill.core.sql", "results.sql")):
    """The pruning of kept outcomes (see results.sql)."""

    prune_results: str


async def prune_expired_results(pool: asyncpg.Pool[Any], schema: SchemaName, *, batch: int = PRUNE_BATCH) -> int:
    """Delete every kept outcome whose retention has passed, ``batch`` rows per statement; how many."""
    statement = ResultSql.for_schema(schema).prune_results
    total = 0
    while True:
        async with pool.acquire() as connection:
            pruned: int = await connection.fetchval(statement, batch)
        total += pruned
        if pruned < batch:
            return total


async def prune_results_periodically(pool: asyncpg.Pool[Any], schema: SchemaName) -> None:
    """Run :func:`prune_expired_results` every minute or so, until cancelled."""

    async def prune() -> int:
        return await prune_expired_results(pool, schema)

    def report(pruned: int) -> None:
        if pruned:
            logger.debug("pruned %s kept job outcome(s) past their retention", pruned)

    service = PeriodicService(
        name="result-pruner",
        what="pruning kept job outcomes",
        run_once=prune,
        interval=Interval.around(PRUNE_INTERVAL_SECONDS, 0.2),
        logger=logger,
        on_ran=report,
    )
    await service.run()
