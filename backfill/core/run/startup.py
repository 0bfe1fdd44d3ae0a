"""A worker's start-up against the database: the pool it runs on, the schema brought up to date, its tasks
registered, and the claims it fetches with."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from backfill.core.errors import ConfigurationError, DatabaseError
from backfill.core.migrations.graphile import migrate
from backfill.core.migrations.own import CORE_LINES, migrate_lines
from backfill.core.run.claims import Claims
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.options import MIN_CALLER_POOL_SIZE, WorkerOptions
from backfill.core.run.queries import WorkerQueries


async def open_pool(database: str | asyncpg.Pool[Any], options: WorkerOptions) -> tuple[asyncpg.Pool[Any], bool]:
    """The pool to run on, and whether the worker opened it (and so closes it): a caller's pool is checked for
    the connections the worker holds, never closed."""
    if isinstance(database, asyncpg.Pool):
        size = database.get_max_size()
        if size < MIN_CALLER_POOL_SIZE:
            raise ConfigurationError(
                f"the pool passed to the worker has max_size={size}; it needs at least {MIN_CALLER_POOL_SIZE} "
                "(listener, fetcher and completer each hold a connection, and handlers need one more)"
            )
        return database, False
    cache_size = 100 if options.prepared_statements else 0
    try:
        pool = await asyncpg.create_pool(
            database,
            min_size=min(2, options.max_pool_size),
            max_size=options.max_pool_size,
            statement_cache_size=cache_size,
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise DatabaseError(f"cannot connect to the database: {error}") from error
    return pool, True


async def prepare(
    pool: asyncpg.Pool[Any],
    options: WorkerOptions,
    queries: WorkerQueries,
    identifiers: Sequence[str],
    *,
    follows: LoopShare | None = None,
) -> Claims:
    """Bring the schema to revision 20 and backfill's own tables up to date (no-ops when they are), and
    register our task identifiers; the worker's claims, which know the ids of its tasks (and make way for the
    worker that ``follows`` leads, if any)."""
    schema = options.schema_name
    try:
        await migrate(pool, schema)
        await migrate_lines(pool, schema, CORE_LINES)
        async with pool.acquire() as connection:
            await connection.execute(queries.ensure_tasks, identifiers)
            claims = Claims(
                pool,
                queries,
                options.worker_id,
                identifiers,
                forbidden_flags=options.forbidden_flags,
                required_flags=options.required_flags,
                follows=follows,
            )
            await claims.load_task_names(connection)
    except asyncpg.PostgresError as error:
        raise DatabaseError(f"worker start-up failed: {error}") from error
    return claims
