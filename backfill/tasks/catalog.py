"""The task catalog: task defaults shared through the database, so they apply wherever a job is enqueued.

``@backfill.task("report", lane="reports", retry_policy="conservative")`` records defaults in the process
that imports the task. A web service that enqueues ``report`` by name without importing the worker's code
would not know them, and the job would land in the Bulk lane with the client's default policy — a lane that
does not reserve capacity. So worker runners publish the defaults of every task they run
(``backfill_task_defaults``, backfill's own migration line ``"tasks"``), and :class:`TaskCatalog` looks up a
task the enqueueing process does not know, caching the answer (absent ones too) for ``ttl`` seconds.

The lookup never runs on the caller's connection: a missing table would abort the caller's transaction. It
uses the client's own pool, and any failure there means "no defaults" (logged once).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import asyncpg

from backfill.core import SchemaName
from backfill.core.extension import ConnectionSource, MigrationLine, OwnMigration, Statements, connection_from
from backfill.tasks.defaults import TaskDefaults, defaults_for
from backfill.tasks.retry_policies import policy_from_flags

logger = logging.getLogger("backfill.task_catalog")

TASKS_LINE = "tasks"
TASKS_MIGRATIONS: tuple[OwnMigration, ...] = (
    OwnMigration(1, "task defaults", "tasks_001_defaults.sql", package="backfill.tasks.catalog_sql"),
    # The custom lanes runners declared (see backfill.lanes.catalog); on this line because runners publish it
    # at start beside the task defaults, and clients read it the same way.
    OwnMigration(2, "declared lanes", "tasks_002_lanes.sql", package="backfill.tasks.catalog_sql"),
    OwnMigration(3, "task result retention", "tasks_003_keep_result.sql", package="backfill.tasks.catalog_sql"),
)
TASKS_MIGRATION_LINE = MigrationLine(TASKS_LINE, TASKS_MIGRATIONS)
DEFAULT_TTL = 30.0


class TaskCatalogSql(Statements, file=("backfill.tasks.catalog_sql", "catalog.sql")):
    """Publish task defaults; look one task's up."""

    publish: str
    lookup: str


async def migrate_task_catalog(executor: ConnectionSource, schema: str | SchemaName | None = None) -> list[int]:
    """Create the catalog table in ``schema`` (Graphile's must exist); the ids applied here."""
    return await TASKS_MIGRATION_LINE.apply(executor, SchemaName.coerce(schema))


async def publish_task_defaults(
    executor: ConnectionSource,
    schema: SchemaName,
    identifiers: Iterable[str],
    *,
    publisher: str | None = None,
    keep_results: Mapping[str, float] | None = None,
) -> None:
    """Write the in-process defaults of ``identifiers`` to the catalog, one statement. A task without defaults
    is published too (all nulls), so defaults removed from the code stop applying. ``keep_results`` adds the
    retention of tasks that declare one on the core's registry only (``backfill.core.task(keep_result=...)``)."""
    rows = [(identifier, defaults_for(identifier) or TaskDefaults()) for identifier in identifiers]
    retentions = [d.keep_result or (keep_results or {}).get(identifier) for identifier, d in rows]
    async with connection_from(executor) as connection:
        await connection.execute(
            TaskCatalogSql.for_schema(schema).publish,
            [identifier for identifier, _ in rows],
            [d.priority for _, d in rows],
            [d.queue for _, d in rows],
            [d.lane for _, d in rows],
            [d.retry_policy.flag if d.retry_policy is not None else None for _, d in rows],
            [d.retry_policy.max_attempts if d.retry_policy is not None else None for _, d in rows],
            publisher or f"{socket.gethostname()}:{os.getpid()}",
            retentions,
        )


class TaskCatalog:
    """Cached lookups of published task defaults for one schema."""

    def __init__(self, schema: SchemaName, *, ttl: float = DEFAULT_TTL) -> None:
        self._schema = schema
        self._ttl = ttl
        self._cache: dict[str, tuple[float, TaskDefaults | None]] = {}
        self._statement = TaskCatalogSql.for_schema(schema).lookup
        self._warned = False

    async def defaults(self, pool: asyncpg.Pool[Any], identifier: str) -> TaskDefaults | None:
        """The defaults the catalog holds for ``identifier`` (ask it only for tasks this process did not import:
        its own ``@backfill.task`` defaults are the ones it runs with)."""
        now = time.monotonic()
        cached = self._cache.get(identifier)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._fetch(pool, identifier)
        self._cache[identifier] = (now + self._ttl, found)
        return found

    async def known_defaults(
        self, pool: Callable[[], Awaitable[asyncpg.Pool[Any]]], identifier: str
    ) -> TaskDefaults | None:
        """``identifier``'s defaults as an enqueuer sees them: this process's own ``@backfill.task`` (no database
        needed, nor ``pool`` called), else those a runner published."""
        local = defaults_for(identifier)
        if local is not None:
            return local
        return await self.defaults(await pool(), identifier)

    async def _fetch(self, pool: asyncpg.Pool[Any], identifier: str) -> TaskDefaults | None:
        try:
            row = await pool.fetchrow(self._statement, identifier)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as error:
            if not self._warned:  # an old schema without the table, or the database is away: enqueue anyway
                logger.warning("task defaults catalog unavailable (%s); enqueueing without published defaults", error)
                self._warned = True
            return None
        if row is None:
            return None
        policy = policy_from_flags(frozenset({row["retry_flag"]})) if row["retry_flag"] else None
        if policy is not None and row["max_attempts"] is not None:
            policy = dataclasses.replace(policy, max_attempts=row["max_attempts"])
        return TaskDefaults(
            priority=row["priority"],
            queue=row["queue_name"],
            lane=row["lane"],
            retry_policy=policy,
            keep_result=row["keep_result"],
        )
