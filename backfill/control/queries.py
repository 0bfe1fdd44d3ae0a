"""The controls' statements (``sql/control.sql``), loaded once per schema, and the errors they may raise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from backfill.core import DatabaseError
from backfill.core.extension import Statements
from backfill.results.queries import OutcomeSql

# The channel every control change notifies; the payload says what changed: PAUSES_CHANGED or CANCEL_REQUESTED.
CONTROL_CHANNEL = "backfill:control"
PAUSES_CHANGED = "pauses"
CANCEL_REQUESTED = "cancel"


class ControlSql(Statements, file=("backfill.control.sql", "control.sql")):
    """Pauses and cancellations (see control.sql)."""

    includes = (OutcomeSql,)
    pause: str
    resume: str
    pauses: str
    lock_for_cancel: str
    cancellation_values: str
    cancel_now: str
    keep_cancelled_outcomes: str
    request_cancel: str
    cancellation_columns: str
    cancellations_of: str
    recent_cancellations: str
    requested_of: str
    mark_cancelled: str
    resolve_cancellations: str
    declared_lanes: str
    record_throughput: str
    notify_cancel_requested: str


@asynccontextmanager
async def control_errors(action: str) -> AsyncIterator[None]:
    """Database failures of ``action`` as :class:`DatabaseError`; a missing table says how to create it."""
    try:
        yield
    except asyncpg.UndefinedTableError as error:
        raise DatabaseError(
            f"{action}: the control tables are missing in this schema; run `backfill migrate` (or start a runner, "
            "which migrates) first"
        ) from error
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise DatabaseError(f"{action}: {type(error).__name__}: {error}") from error
