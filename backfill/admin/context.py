"""What a handler of the admin API works with: the database (its own small pool), the APIs it builds on, the
runner serving it (if any), and the audit trail every action is written to."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from backfill.admin.live import LiveFigures
from backfill.admin.queries import AdminSql
from backfill.admin.security import Caller
from backfill.core import SchemaName, WorkerUtils
from backfill.dlq import DeadLetterQueue
from backfill.results.reader import OutcomeReader
from backfill.results.waiter import OutcomeWaiter

if TYPE_CHECKING:
    from backfill.runner import WorkerRunner

logger = logging.getLogger("backfill.admin")


@dataclass(frozen=True, slots=True)
class AdminContext:
    """One per API, shared by its requests."""

    pool: asyncpg.Pool[Any]
    schema: SchemaName
    utils: WorkerUtils
    dlq: DeadLetterQueue
    sql: AdminSql
    live: LiveFigures
    outcomes: OutcomeReader
    waiter: OutcomeWaiter
    runner: WorkerRunner | None = None

    async def audit(
        self, caller: Caller, action: str, target: dict[str, Any], count: int, *, dry_run: bool = False
    ) -> None:
        """Record an action: who, what (ids or a filter, never a payload), how many rows, when (the insert's
        time). Logged too. A failed insert is logged as an error and does not undo the action, which committed."""
        actor, target_json = caller.describe(), json.dumps(target, default=str)
        logger.info(
            "admin %s by %s: %s row(s)%s, target %s",
            action,
            actor,
            count,
            " (dry run)" if dry_run else "",
            target_json[:500],
        )
        try:
            await self.pool.execute(self.sql.record_audit, actor, action, target_json, count, dry_run)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            logger.error("admin %s by %s could not be written to the audit table: %s", action, actor, error)
