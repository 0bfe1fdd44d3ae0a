"""Pause and resume work fleet-wide: a lane, a named queue or a task, stored in ``backfill_pauses``.

Every backfill runner sharing the schema honours a pause within about a second: it is told by NOTIFY on commit,
and reads the table every second anyway (:mod:`backfill.control.watcher`). Running jobs finish; paused work
stays queued. Node workers do not read the table (docs/how-to/operator-controls.md).
"""

from __future__ import annotations

from backfill.control.models import Pause, PauseKind, pause_target
from backfill.control.queries import ControlSql, control_errors
from backfill.core import ConfigurationError, SchemaName
from backfill.core.extension import ConnectionSource, Executor, connection_from
from backfill.lanes.lane import BUILT_IN_LANES, check_lane_name


async def pause(
    executor: ConnectionSource,
    schema: SchemaName,
    *,
    lane: str | None = None,
    queue: str | None = None,
    task: str | None = None,
    by: str,
    reason: str | None = None,
) -> Pause:
    """Pause one lane, named queue or task; pausing it again records the new who, when and why. A lane must be
    Fast, Bulk or one a runner has declared (a typo would pause nothing)."""
    kind, name = pause_target(lane=lane, queue=queue, task=task)
    async with control_errors(f"pausing {kind.value} {name!r}"), connection_from(executor) as connection:
        if kind is PauseKind.LANE:
            await _check_lane(connection, schema, name)
        row = await connection.fetchrow(ControlSql.for_schema(schema).pause, kind.value, name, by, reason)
    assert row is not None
    return Pause.from_record(row)


async def resume(
    executor: ConnectionSource,
    schema: SchemaName,
    *,
    lane: str | None = None,
    queue: str | None = None,
    task: str | None = None,
) -> Pause | None:
    """Resume one lane, named queue or task; the pause that was lifted, ``None`` if it was not paused."""
    kind, name = pause_target(lane=lane, queue=queue, task=task)
    async with control_errors(f"resuming {kind.value} {name!r}"), connection_from(executor) as connection:
        row = await connection.fetchrow(ControlSql.for_schema(schema).resume, kind.value, name)
    return None if row is None else Pause.from_record(row)


async def list_pauses(executor: ConnectionSource, schema: SchemaName) -> list[Pause]:
    """Every pause in force, by kind and name."""
    async with control_errors("listing pauses"), connection_from(executor) as connection:
        rows = await connection.fetch(ControlSql.for_schema(schema).pauses)
    return [Pause.from_record(row) for row in rows]


async def _check_lane(connection: Executor, schema: SchemaName, name: str) -> None:
    if name in BUILT_IN_LANES:
        return
    check_lane_name(name)
    rows = await connection.fetch(ControlSql.for_schema(schema).declared_lanes)
    declared = [row["name"] for row in rows]
    if name not in declared:
        known = ", ".join([*BUILT_IN_LANES, *declared])
        raise ConfigurationError(f"lane {name!r}: no such lane (known: {known}); pausing a typo would pause nothing")
