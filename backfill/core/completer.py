"""Batched completion and failure of jobs.

Handlers finish one by one, but writing each result in its own round trip would cap a worker at a few
thousand jobs per second. Results are queued here and written by one flusher: whenever a write is not in
flight, everything queued so far goes out in one statement (no fixed batch delay, so an idle worker writes
a lone result at once, and a busy one naturally writes hundreds per statement).

A write that fails (connection lost, database restarting) is retried with backoff while the results stay
queued, so no result is dropped; the job rows stay locked by us meanwhile, which is what keeps other
workers from running them twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from backfill.core.jobs import Job
from backfill.core.pinned import PinnedConnection
from backfill.core.queries import WorkerQueries
from backfill.core.retry import ConsecutiveFailures

logger = logging.getLogger("backfill.worker")


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record: the message becomes ``last_error``."""

    job: Job
    message: str
    replacement_payload: str | None = None  # JSON text; batch jobs keep only their failed items
    permanent: bool = False
    retry_delay: float | None = None  # seconds until the next attempt; overrides Graphile's backoff when set

    @property
    def final(self) -> bool:
        """No attempt is left after this one: the job is now permanently failed."""
        return self.permanent or self.job.attempts >= self.job.max_attempts


class Completer:
    """Queues results and writes them in batches, fenced by the worker id."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        queries: WorkerQueries,
        worker_id: str,
        *,
        on_queues_released: Callable[[], None] = lambda: None,
        on_lost: Callable[[str, list[int]], None] = lambda action, job_ids: None,
        on_written: Callable[[Sequence[Job], Sequence[Failure]], None] | None = None,
    ) -> None:
        self._connection = PinnedConnection(pool)
        # Called after a write that unlocked named queues: their next jobs have just become fetchable.
        self._on_queues_released = on_queues_released
        self._on_lost = on_lost  # (action, job ids) of results discarded because the lease was lost
        # Told the results that were committed (lost leases excluded), once per write; None costs nothing.
        self._on_written = on_written
        self._queries = queries
        self._worker_id = worker_id
        self._completed: list[Job] = []
        self._failed: list[Failure] = []
        self._in_flight: tuple[Sequence[Job], Sequence[Failure]] = ((), ())
        self._pending = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.lost_leases = 0
        self.lost_completions = 0  # the part of lost_leases that were successes
        self.write_failures = 0  # failed writes so far; the worker reconciles its locks after one

    def complete(self, job: Job) -> None:
        self._completed.append(job)
        self._idle.clear()
        self._pending.set()

    def fail(self, failure: Failure) -> None:
        self._failed.append(failure)
        self._idle.clear()
        self._pending.set()

    def owned_job_ids(self) -> set[int]:
        """Jobs whose results are queued or being written: still locked by us, and rightly so."""
        completed, failed = self._in_flight
        return {job.id for job in (*self._completed, *completed)} | {f.job.id for f in (*self._failed, *failed)}

    async def drained(self) -> None:
        """Wait until every result queued so far has been written."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write queued results until cancelled; cancel only after :meth:`drained` if nothing may be lost."""
        failures = ConsecutiveFailures(initial=0.05, maximum=2.0)
        while True:
            await self._pending.wait()
            self._pending.clear()
            completed, self._completed = self._completed, []
            failed, self._failed = self._failed, []
            self._in_flight = (completed, failed)
            try:
                await self._write(completed, failed)
            except Exception as error:  # connection trouble above all; anything else is retried too
                self._in_flight = ((), ())
                self.write_failures += 1
                # Put them back in front, and try again after a pause.
                self._completed[:0] = completed
                self._failed[:0] = failed
                self._pending.set()
                what = f"recording {len(completed) + len(failed)} job result(s)"
                await asyncio.sleep(failures.failed(logger, what, error))
                continue
            self._in_flight = ((), ())
            failures.succeeded()
            if any(job.job_queue_id is not None for job in completed) or any(
                f.job.job_queue_id is not None for f in failed
            ):
                self._on_queues_released()
            if not self._completed and not self._failed:
                self._idle.set()

    async def close(self) -> None:
        await self._connection.close()

    async def _write(self, completed: Sequence[Job], failed: Sequence[Failure]) -> None:
        connection = await self._connection.get()
        try:
            await self._write_on(connection, completed, failed)
        except BaseException:
            await self._connection.discard()
            raise

    async def _write_on(self, connection: Any, completed: Sequence[Job], failed: Sequence[Failure]) -> None:
        completed_rows: Sequence[asyncpg.Record] = ()
        failed_rows: Sequence[asyncpg.Record] = ()
        if completed:
            ids = [job.id for job in completed]
            completed_rows = await connection.fetch(
                self._queries.complete_jobs, ids, self._worker_id, [job.locked_at for job in completed]
            )
            self._note_lost("complete", ids, completed_rows)
        if failed:
            ids = [f.job.id for f in failed]
            failed_rows = await connection.fetch(
                self._queries.fail_jobs,
                ids,
                [f.message for f in failed],
                [f.replacement_payload for f in failed],
                [f.permanent for f in failed],
                [f.retry_delay for f in failed],
                self._worker_id,
                [f.job.locked_at for f in failed],
                [f.job.attempts for f in failed],
            )
            self._note_lost("fail", ids, failed_rows)
        if self._on_written is not None:
            self._tell_written(completed, completed_rows, failed, failed_rows)

    def _tell_written(
        self,
        completed: Sequence[Job],
        completed_rows: Sequence[asyncpg.Record],
        failed: Sequence[Failure],
        failed_rows: Sequence[asyncpg.Record],
    ) -> None:
        assert self._on_written is not None
        if len(completed_rows) != len(completed):
            kept = {row["id"] for row in completed_rows}
            completed = [job for job in completed if job.id in kept]
        if len(failed_rows) != len(failed):
            kept = {row["id"] for row in failed_rows}
            failed = [f for f in failed if f.job.id in kept]
        try:
            self._on_written(completed, failed)
        except Exception:  # an observer must not break result writing
            logger.exception("results-written callback failed")

    def _note_lost(self, action: str, ids: list[int], rows: Sequence[asyncpg.Record]) -> None:
        if len(rows) == len(ids):
            return
        written = {row["id"] for row in rows}
        lost = [job_id for job_id in ids if job_id not in written]
        self.lost_leases += len(lost)
        if action == "complete":
            self.lost_completions += len(lost)
        # The lock was taken from us (force-unlocked or released as stale): another worker may be running
        # these jobs now, so our result must not overwrite theirs.
        logger.warning("lost the lease on %s job(s) before %s; result discarded: %s", len(lost), action, lost[:20])
        try:
            self._on_lost(action, lost)
        except Exception:  # an observer must not break result writing
            logger.exception("lost-lease callback failed")
