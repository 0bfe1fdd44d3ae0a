"""A worker's heartbeat: its row in ``backfill_workers``, kept fresh so that sweepers know it is alive.

A worker registers at start-up, touches ``last_heartbeat_at`` every ``interval`` seconds while it runs and
deletes its row at a clean shutdown. A worker whose row has not been touched for its own ``dead_after`` is
declared dead by a sweeper (:mod:`backfill.core.upkeep.sweeper`), which deletes the row and releases its jobs.

A worker that was only slow (a stalled event loop, a long network partition) finds its row gone at its next
beat. Its running jobs have been released and may be running elsewhere already; their results will be
discarded when it reports them, because every write after a claim is fenced by ``locked_at`` (see
:mod:`backfill.core.run.queries`). It registers again and carries on with new claims.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cache
from importlib import metadata
from typing import Any

import asyncpg

from backfill.core.errors import ConfigurationError
from backfill.core.events import Events
from backfill.core.retry import ConsecutiveFailures
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.core.upkeep.periodic import Interval, PeriodicService

logger = logging.getLogger("backfill.heartbeat")


@cache
def _backfill_version() -> str | None:
    # Read from the installed distribution: backfill.core must not import the backfill package itself.
    try:
        return metadata.version("backfill")
    except metadata.PackageNotFoundError:
        return None


class HeartbeatSql(Statements, file=("backfill.core.sql", "heartbeat.sql")):
    """A worker's row in ``backfill_workers`` (see heartbeat.sql)."""

    register: str
    beat: str
    deregister: str


class Heartbeat:
    """Registers one worker, beats for it until cancelled, and deregisters it."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        schema: SchemaName,
        worker_id: str,
        *,
        interval: float,
        dead_after: float,
        concurrency: int,
        tasks: Sequence[str],
        events: Events,
        on_declared_dead: Callable[[], None] = lambda: None,
        lane: str | None = None,
    ) -> None:
        if interval <= 0:
            raise ConfigurationError(f"the heartbeat interval must be positive, got {interval}")
        if dead_after <= interval:
            # Otherwise every worker would look dead between two of its own beats.
            raise ConfigurationError(
                f"dead_after ({dead_after}s) must be longer than the heartbeat interval ({interval}s)"
            )
        self._pool = pool
        self._worker_id = worker_id
        self._interval = interval
        self._dead_after = timedelta(seconds=dead_after)
        self._concurrency = concurrency
        self._tasks = list(tasks)
        self._lane = lane
        self._events = events
        self._on_declared_dead = on_declared_dead  # the worker drops the claims it has not started yet
        self._registered = False
        self._declared_dead_count = 0
        self._failures = ConsecutiveFailures(initial=min(0.05, interval), maximum=interval)
        self._sql = HeartbeatSql.for_schema(schema)

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def declared_dead_count(self) -> int:
        """How often a sweeper declared this worker dead while it was in fact still running."""
        return self._declared_dead_count

    async def register(self) -> None:
        """Insert (or refresh) this worker's row. Raises on a database error: at start-up that is fatal."""
        async with self._pool.acquire() as connection:
            await connection.execute(
                self._sql.register,
                self._worker_id,
                socket.gethostname(),
                os.getpid(),
                self._dead_after,
                self._concurrency,
                self._tasks,
                _backfill_version(),
                self._lane,
            )
        self._registered = True

    async def beat(self) -> bool:
        """Touch our row once; ``False`` when it was gone (we had been declared dead) and was re-created.

        Database errors propagate; :meth:`run` retries them.
        """
        if not self._registered:
            # A registration after being declared dead failed last time: finish it rather than count again.
            await self.register()
            return True
        async with self._pool.acquire() as connection:
            status = await connection.execute(self._sql.beat, self._worker_id)
        if status != "UPDATE 0":
            return True
        self._registered = False
        self._declared_dead_count += 1
        logger.warning(
            "worker %s was declared dead by a sweeper (no heartbeat within %s) and its jobs were released; "
            "the results of the jobs it is running now will be discarded as lost leases. Registering again.",
            self._worker_id,
            self._dead_after,
        )
        self._on_declared_dead()
        self._events.emit("heartbeat:declaredDead", worker_id=self._worker_id)
        await self.register()
        return False

    async def run(self) -> None:
        """Beat every ``interval`` seconds until cancelled. Never returns or raises on a database error."""
        service = PeriodicService(
            name="heartbeat",
            what=f"heartbeat of worker {self._worker_id}",
            run_once=self.beat,
            # Not jittered: dead_after is checked against this interval, and a late beat eats into the margin.
            interval=Interval.around(self._interval, jitter=0),
            logger=logger,
            # A beat stuck behind an exhausted pool or a dead socket must not hold up the next one: it is
            # abandoned after one interval and counted as a failure.
            timeout=self._interval,
            # Retried sooner than a full interval (the backoff is capped at it), so that a short outage does
            # not eat into the margin before dead_after.
            retry_sooner=True,
            failures=self._failures,
        )
        await service.run()

    async def deregister(self) -> None:
        """Delete our row, at a clean shutdown once every lock was released. Logs errors instead of raising."""
        try:
            async with self._pool.acquire() as connection:
                await connection.execute(self._sql.deregister, self._worker_id)
        except Exception as error:
            # Harmless: a sweeper deletes the row once dead_after has passed (we hold no locks by now).
            logger.warning("could not deregister worker %s: %s", self._worker_id, error)
        self._registered = False
