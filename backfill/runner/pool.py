"""The runner's one connection pool: how big it must be for its lanes, and opening it patiently."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential, wait_random

from backfill.core import ConfigurationError, DatabaseError
from backfill.lanes.lane import Lane

logger = logging.getLogger("backfill.runner")

# Connections each lane's worker keeps for itself (fetcher, completer, listener), and a few for the
# runner's own statements (dead-letter moves, queue statistics, migrations).
CONNECTIONS_PER_LANE = 3
RUNNER_CONNECTIONS = 3


def pool_size(lanes: Sequence[Lane], max_pool_size: int | None) -> int:
    """``BACKFILL_MAX_POOL_SIZE`` when set (refused when too small for the lanes), else what the lanes need:
    their slots plus the connections their workers and the runner hold."""
    needed = CONNECTIONS_PER_LANE * len(lanes) + RUNNER_CONNECTIONS
    if max_pool_size is not None and max_pool_size < needed:
        raise ConfigurationError(
            f"BACKFILL_MAX_POOL_SIZE: {max_pool_size} is too small for {len(lanes)} lanes: each lane's worker "
            f"holds {CONNECTIONS_PER_LANE} connections and the runner {RUNNER_CONNECTIONS}, so at least "
            f"{needed} (plus what handlers use; unset, it is computed from the lanes' concurrency)"
        )
    return max_pool_size or sum(lane.concurrency + CONNECTIONS_PER_LANE for lane in lanes) + RUNNER_CONNECTIONS


async def connect(dsn: str, size: int, prepared_statements: bool, patience: float) -> asyncpg.Pool[Any]:
    """A pool, waiting up to ``patience`` seconds for the database to accept connections: in a container
    deployment the worker often starts before PostgreSQL is ready, and crash-looping on that is noise.

    tenacity rather than the core's backoff: this is the layer, and a bounded wait with a deadline is exactly
    what tenacity expresses (the core's loops retry for ever and log by rate)."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((OSError, asyncpg.CannotConnectNowError, asyncpg.TooManyConnectionsError)),
        stop=stop_after_delay(patience),
        wait=wait_exponential(multiplier=0.2, max=5.0) + wait_random(0, 0.2),
        reraise=True,
        before_sleep=lambda state: logger.warning(
            "database not reachable yet (%s); retrying", state.outcome.exception() if state.outcome else "?"
        ),
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await asyncpg.create_pool(
                    dsn, min_size=2, max_size=size, statement_cache_size=100 if prepared_statements else 0
                )
    except (OSError, asyncpg.PostgresError) as error:
        raise DatabaseError(f"cannot connect to the database: {error}") from error
    raise AssertionError("unreachable: tenacity either returns or reraises")
