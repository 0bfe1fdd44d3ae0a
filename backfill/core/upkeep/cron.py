"""The cron scheduler: turns :class:`~backfill.core.upkeep.crontab.CronItem` minutes into jobs, exactly once.

Exactly once holds across any number of workers, Node graphile-worker 0.18 ones included, because every
scheduler writes the same way Graphile does: one statement per minute that first advances
``_private_known_crontabs.last_execution`` for each due identifier, *only if it is older than that minute*,
and enqueues a job only for the identifiers whose row it advanced. Two workers scheduling one minute
serialise on the row; the second sees the minute already recorded and adds nothing.

The minute-by-minute logic is in :meth:`CronScheduler.register`, :meth:`CronScheduler.backfill` and
:meth:`CronScheduler.schedule_minute`, which take explicit timestamps; :meth:`CronScheduler.run` is only
the timer around them (its clock and sleep are injectable, so tests need not wait for real minutes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg

from backfill.core.enqueue import encode_spec_rows, job_spec_json_fields
from backfill.core.errors import ConfigurationError
from backfill.core.events import Events
from backfill.core.jobs import JobSpec, JobSql
from backfill.core.retry import exponential_delays
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.core.upkeep.crontab import ONE_MINUTE, CronItem, ceil_minute, floor_minute

logger = logging.getLogger("backfill.cron")

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
Transform = Callable[[JobSpec], JobSpec | None]
T = TypeVar("T")

# Graphile's CRON_RETRY: 200 ms, growing by half each time, capped at a minute, forever.
RETRY_MIN_DELAY = 0.2
RETRY_MAX_DELAY = 60.0
RETRY_MULTIPLIER = 1.5
# Waking a millisecond after the minute starts keeps a timer that fires exactly on time from reading the
# end of the previous minute.
_TIMER_SLACK = 0.001


@dataclass(frozen=True, slots=True)
class KnownCrontab:
    """A row of ``_private_known_crontabs``."""

    identifier: str
    known_since: datetime
    last_execution: datetime | None


def cron_timestamp(moment: datetime) -> str:
    """``moment`` as JavaScript's ``Date.toISOString()`` writes it (``2026-11-23T07:00:00.000Z``), as Graphile
    stores it in ``payload._cron.ts``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def cron_payload(item: CronItem, moment: datetime, *, backfilled: bool) -> dict[str, Any]:
    """The item's payload plus Graphile's ``_cron`` object (which replaces any ``_cron`` the item had)."""
    return {**item.payload, "_cron": {"ts": cron_timestamp(moment), "backfilled": backfilled}}


class CronSql(Statements, file=("backfill.core.sql", "cron.sql")):
    """The scheduler's statements (see cron.sql)."""

    includes = (JobSql,)
    register: str
    read_known: str
    schedule: str


class CronScheduler:
    """Schedules the jobs of ``items`` every minute until cancelled; see the module docstring."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        schema: SchemaName,
        items: Sequence[CronItem],
        *,
        events: Events,
        worker_id: str,
        transform: Transform | None = None,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, CronItem):
                raise ConfigurationError(f"cron items must be CronItem values, not {type(item).__name__}")
            if item.identifier in seen:
                raise ConfigurationError(f"two cron items share the identifier {item.identifier!r}; give one an id")
            seen.add(item.identifier)
        self._pool = pool
        self._schema = schema
        self._items = tuple(items)
        self._events = events
        self._worker_id = worker_id
        self._transform = transform
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._sleep: Sleep = sleep or asyncio.sleep
        self._sql = CronSql.for_schema(schema)

    @property
    def items(self) -> tuple[CronItem, ...]:
        return self._items

    # -- the minute-by-minute logic, with explicit timestamps ------------------------------------------------

    async def register(self, now: datetime) -> dict[str, KnownCrontab]:
        """Record identifiers seen for the first time as known since ``now`` (no last execution, as Graphile
        writes them); return every item's row."""
        identifiers = [item.identifier for item in self._items]
        async with self._pool.acquire() as connection:
            await connection.execute(self._sql.register, identifiers, now)
            rows = await connection.fetch(self._sql.read_known, identifiers)
        return {row["identifier"]: KnownCrontab(**dict(row)) for row in rows}

    async def backfill(self, now: datetime, known: dict[str, KnownCrontab] | None = None) -> list[int]:
        """Schedule, late and marked ``backfilled``, the minutes of the last ``fill`` before ``now`` that no
        worker scheduled; returns the new job ids.

        As in Graphile, an item is only filled from its last execution (or, never executed, from when it
        became known), so a newly added item is not run for minutes before it existed. Minutes go oldest
        first, one statement per minute holding every item due then: recording a later minute first would
        make the earlier one look already done.
        """
        if known is None:
            known = {row.identifier: row for row in await self._read_known()}
        # The first minute each item may fill: after its last execution (Graphile starts *at* it, which the
        # upsert then skips), else from when it became known.
        candidates = [
            (item, row.known_since if row.last_execution is None else row.last_execution + ONE_MINUTE)
            for item in self._items
            if item.fill and (row := known.get(item.identifier)) is not None
        ]
        if not candidates:
            return []
        job_ids: list[int] = []
        moment = ceil_minute(now - max(item.fill for item, _ in candidates))
        while moment < now:
            due = [
                item
                for item, not_before in candidates
                if now - moment <= item.fill and moment >= not_before and item.matches(moment)
            ]
            if due:
                for item in due:
                    self._events.emit("cron:backfill", worker_id=self._worker_id, item=item, timestamp=moment)
                job_ids += await self.schedule(moment, due, backfilled=True)
            moment += ONE_MINUTE
        return job_ids

    async def register_and_backfill(self, now: datetime) -> list[int]:
        """What a scheduler does once at start-up; returns the ids of the backfilled jobs."""
        return await self.backfill(now, await self.register(now))

    async def schedule_minute(self, moment: datetime, *, backfilled: bool = False) -> list[int]:
        """Schedule every item due at ``moment`` (floored to its minute); returns the ids of the jobs added,
        which leave out the items another worker already scheduled for that minute."""
        moment = _utc_minute(moment)
        due = [item for item in self._items if item.matches(moment)]
        if not due:
            return []
        self._events.emit("cron:schedule", worker_id=self._worker_id, timestamp=moment, items=due)
        job_ids = await self.schedule(moment, due, backfilled=backfilled)
        self._events.emit("cron:scheduled", worker_id=self._worker_id, timestamp=moment, items=due, jobs=job_ids)
        return job_ids

    async def schedule(self, moment: datetime, items: Sequence[CronItem], *, backfilled: bool) -> list[int]:
        """One statement: record ``moment`` as executed for ``items`` and add the jobs of those it advanced."""
        moment = _utc_minute(moment)
        specs: list[list[Any]] = []
        for item in items:
            built = JobSpec(
                item.task,
                cron_payload(item, moment, backfilled=backfilled),
                queue_name=item.queue_name,
                run_at=moment,
                max_attempts=item.max_attempts,
                job_key=item.job_key,
                priority=item.priority,
            )
            spec: JobSpec | None = built
            if self._transform is not None:
                try:
                    spec = self._transform(built)
                except Exception:
                    # Leave the minute unrecorded for this item: a later fill can still schedule it, and the
                    # other items of the minute are not held back by one broken interceptor.
                    logger.exception("cron: the transform failed for %s at %s; not scheduled", item.identifier, moment)
                    continue
            specs.append(_spec_row(item, spec))
        if not specs:
            return []
        rows = await self._pool.fetch(self._sql.schedule, encode_spec_rows(specs), moment)
        return [row["id"] for row in rows if row["id"] is not None]

    async def _read_known(self) -> list[KnownCrontab]:
        rows = await self._pool.fetch(self._sql.read_known, [item.identifier for item in self._items])
        return [KnownCrontab(**dict(row)) for row in rows]

    # -- the timer -------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Register, backfill, then schedule each minute at its start, until cancelled.

        A timer that fires early (the clock moved back) is re-armed; one that fires late (a stalled loop, the
        clock moved forward, the database was unreachable) schedules every minute it missed, one by one and
        not as backfill, as Graphile does. A failed statement is retried with backoff for the same minute,
        so an outage delays minutes but loses none.
        """
        if not self._items:
            await asyncio.Future()  # nothing to schedule; wait to be cancelled like a scheduler that has work
        start = self._clock()
        self._events.emit("cron:starting", worker_id=self._worker_id, items=self._items)
        await self._retrying("registering and backfilling", lambda: self.register_and_backfill(start))
        self._events.emit("cron:started", worker_id=self._worker_id, items=self._items)
        next_minute = ceil_minute(start.astimezone(UTC))
        while True:
            now = self._clock()
            delay = (next_minute - now).total_seconds()
            if delay > 0:
                await self._sleep(delay + _TIMER_SLACK)
                now = self._clock()
            current = floor_minute(now.astimezone(UTC))
            if current < next_minute:
                logger.debug("cron: timer fired %.3fs early; re-armed", (next_minute - now).total_seconds())
                self._events.emit("cron:prematureTimer", worker_id=self._worker_id, expected=next_minute, actual=now)
                continue
            if current > next_minute:
                logger.debug("cron: %s behind; catching up", now - next_minute)
                self._events.emit("cron:overdueTimer", worker_id=self._worker_id, expected=next_minute, actual=now)
            minute = next_minute
            await self._retrying(f"scheduling {cron_timestamp(minute)}", partial(self.schedule_minute, minute))
            next_minute += ONE_MINUTE

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        # The shared curve with Graphile's numbers and, as in Graphile, no jitter: a minute is retried on the
        # same schedule as a Node worker would retry it.
        delays = exponential_delays(initial=RETRY_MIN_DELAY, maximum=RETRY_MAX_DELAY, factor=RETRY_MULTIPLIER)
        attempt = 0
        while True:
            try:
                return await operation()
            except Exception as error:  # connection lost, failover, a lock timeout: all worth another try
                delay = next(delays)
                attempt += 1
                logger.error("cron: %s failed (attempt %d); retrying in %.1fs: %r", what, attempt, delay, error)
                await self._sleep(delay)


def _utc_minute(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("moment must be timezone-aware")
    return floor_minute(moment.astimezone(UTC))


def _spec_row(item: CronItem, spec: JobSpec | None) -> list[Any]:
    """The row of cron.sql's ``schedule`` for ``item``: the spec's fields (nulls when the transform dropped it),
    then the item's identifier and job key mode."""
    fields = [None] * 8 if spec is None else job_spec_json_fields(spec)
    return [*fields, item.identifier, None if spec is None else item.job_key_mode]
