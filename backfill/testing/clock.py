"""A controllable clock for the queue: waiting jobs made due as if time had passed, without sleeping.

Workers compare a job's ``run_at`` with the database's ``now()``, which a test cannot move. So the clock moves
the jobs instead: :meth:`QueueClock.advance` takes ``seconds`` off the ``run_at`` of every job waiting in the
database (not held by a worker, with an attempt left). A retry's backoff or a job enqueued with a delay then
becomes due, and :func:`~backfill.testing.run_jobs` runs it.

What it does not move, by design: ``now()`` itself, so a job enqueued *after* an advance is scheduled from the real
time; ``created_at``, lock times and the dead-letter queue's timestamps; and cron, whose scheduler reads the
worker's wall clock (run_jobs schedules no cron at all; see ``docs/how-to/testing.md`` for testing cron tasks).
"""

from __future__ import annotations

import math
from datetime import timedelta

import asyncpg

from backfill.core import SchemaName
from backfill.testing.queries import WaitingJobsSql


class QueueClock:
    """Moves the waiting jobs of one database forward in time; ``elapsed`` is the total moved, in seconds."""

    def __init__(self, database_url: str, *, schema: SchemaName | str | None = None) -> None:
        self._database_url = database_url
        self._sql = WaitingJobsSql.for_schema(SchemaName.coerce(schema))
        self.elapsed = 0.0

    async def advance(self, seconds: float | timedelta) -> int:
        """Make every waiting job ``seconds`` more due, as if that much time had passed; the number of jobs moved."""
        amount = seconds.total_seconds() if isinstance(seconds, timedelta) else seconds
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
            raise ValueError(f"seconds must be a finite number of seconds, 0 or more, not {seconds!r}")
        connection = await asyncpg.connect(self._database_url)
        try:
            moved: int = await connection.fetchval(self._sql.advance_jobs, float(amount))
        finally:
            await connection.close()
        self.elapsed += amount
        return moved

    async def advance_to_next_job(self) -> float:
        """Advance just enough for the first waiting job that is not due yet to be due (a retry whose jittered
        backoff the test does not know, say); the seconds advanced, 0 when no job is waiting for later."""
        connection = await asyncpg.connect(self._database_url)
        try:
            seconds: float | None = await connection.fetchval(self._sql.next_run_at)
            if seconds is None:
                return 0.0
            # The job's run_at becomes the moment the gap was measured (the statement's now()): past, so due.
            seconds = max(seconds, 0.0)
            await connection.fetchval(self._sql.advance_jobs, seconds)
        finally:
            await connection.close()
        self.elapsed += seconds
        return seconds
