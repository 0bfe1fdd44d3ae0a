"""Lanes that runners declared, so that enqueueing into a lane no runner serves (a typo, most often) warns.

A runner declares its custom lanes (``BACKFILL_LANES``) at start in ``backfill_lanes`` (migration line
``"tasks"``, id 2). A client that enqueues into a custom lane looks the lane up there (cached for ``ttl``
seconds) and warns once per lane when no runner has ever declared it: the job is written anyway (runners may
be deployed after the code that enqueues), but it waits until some runner serves that lane. Before any runner
has started against the schema (a fresh deployment enqueueing first), nothing is known, so nothing is said.

Like the task catalog, the lookup runs on the client's own pool, never on a caller's connection, and any
failure means "cannot tell" (no warning).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

import asyncpg

from backfill.core import SchemaName
from backfill.core.extension import ConnectionSource, Statements, connection_from
from backfill.lanes.lane import BUILT_IN_LANES, Lane

logger = logging.getLogger("backfill.lanes")

DEFAULT_TTL = 30.0


class LaneCatalogSql(Statements, file=("backfill.lanes.sql", "catalog.sql")):
    """Declare the lanes a runner serves; read those declared."""

    declare: str
    declared: str


async def declare_lanes(
    executor: ConnectionSource, schema: SchemaName, lanes: Iterable[Lane], *, declared_by: str | None = None
) -> None:
    """Record ``lanes`` (their custom ones) as served, one statement."""
    custom = [lane for lane in lanes if lane.is_custom]
    if not custom:
        return
    async with connection_from(executor) as connection:
        await connection.execute(
            LaneCatalogSql.for_schema(schema).declare,
            [lane.name for lane in custom],
            [lane.concurrency for lane in custom],
            declared_by or f"{socket.gethostname()}:{os.getpid()}",
        )


class LaneCatalog:
    """Cached knowledge of the declared lanes of one schema, and the warnings already given."""

    def __init__(self, schema: SchemaName, *, ttl: float = DEFAULT_TTL) -> None:
        self._ttl = ttl
        self._statement = LaneCatalogSql.for_schema(schema).declared
        self._declared: frozenset[str] | None = None
        self._expires = 0.0
        self._warned: set[str] = set()

    async def warn_if_undeclared(self, pool: asyncpg.Pool[Any], lane: str) -> None:
        """Warn (once per lane) when ``lane`` is custom and no runner ever declared it."""
        if lane in BUILT_IN_LANES or lane in self._warned:
            return
        declared = await self._lanes(pool)
        if declared is None or lane in declared:
            return
        self._warned.add(lane)
        known = ", ".join(sorted(declared)) or "none yet"
        logger.warning(
            "lane %r has never been declared by a runner (BACKFILL_LANES); its jobs wait until a runner serves "
            "it. A typo? Declared custom lanes: %s",
            lane,
            known,
        )

    async def _lanes(self, pool: asyncpg.Pool[Any]) -> frozenset[str] | None:
        now = time.monotonic()
        if now < self._expires:
            return self._declared
        try:
            row = await pool.fetchrow(self._statement)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            row = None  # an older schema without the tables, or the database away: cannot tell, so no warning
        declared = frozenset(row["lanes"]) if row is not None and row["runners_seen"] else None
        self._declared, self._expires = declared, now + self._ttl
        return declared
