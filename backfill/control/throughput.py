"""The runner's share of ``backfill_throughput``: attempts that ended, per minute and lane, for the admin API.

Graphile deletes a finished job, so "how many jobs finished in the last five minutes" has no answer in its
tables. Each runner counts the attempts its lanes end (from ``attempts:batch``, which keeps the workers' fast
path) and adds its counts to the current minute's row every ``interval`` seconds: one small statement per
process, whatever the throughput. A flush that fails keeps its counts for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from backfill.control.queries import ControlSql
from backfill.core import Event, Events, SchemaName
from backfill.core.extension import ConnectionSource, ConsecutiveFailures, connection_from

logger = logging.getLogger("backfill.throughput")

DEFAULT_INTERVAL = 5.0


class ThroughputRecorder:
    """Counts ended attempts by lane and adds them to ``backfill_throughput``."""

    def __init__(self, pool: ConnectionSource, schema: SchemaName, *, interval: float = DEFAULT_INTERVAL) -> None:
        self._pool = pool
        self._sql = ControlSql.for_schema(schema)
        self._interval = interval
        self._succeeded: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()

    def observe(self, events: Events, lane: str) -> None:
        def on_attempts(event: Event) -> None:
            if event["succeeded"]:
                self._succeeded[lane] += len(event["succeeded"])
            if event["failed"]:
                self._failed[lane] += sum(1 for failure in event["failed"] if not failure.interrupted)

        events.on("attempts:batch", on_attempts)

    async def flush(self) -> None:
        """Add what was counted since the last flush; kept for the next one if the write fails."""
        lanes = sorted(set(self._succeeded) | set(self._failed))
        if not lanes:
            return
        succeeded, failed = self._succeeded, self._failed
        self._succeeded, self._failed = Counter(), Counter()
        try:
            async with connection_from(self._pool) as connection:
                await connection.execute(
                    self._sql.record_throughput,
                    lanes,
                    [succeeded[lane] for lane in lanes],
                    [failed[lane] for lane in lanes],
                )
        except BaseException:
            self._succeeded.update(succeeded)
            self._failed.update(failed)
            raise

    async def run(self) -> None:
        failures = ConsecutiveFailures(maximum=60.0)
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as error:  # an outage: the counts wait for the next flush
                await asyncio.sleep(failures.failed(logger, "recording throughput", error))
            else:
                failures.succeeded()
