"""Batched completion and failure of jobs.

Handlers finish one by one, but writing each result in its own round trip would cap a worker at a few
thousand jobs per second. Results are queued here and written by one flusher: whenever a write is not in
flight, everything queued so far goes out in one statement (no fixed batch delay, so an idle worker writes
a lone result at once, and a busy one naturally writes hundreds per statement).

A write that fails (connection lost, database restarting) is retried with backoff while the results stay
queued, so no result is dropped; the job rows stay locked by us meanwhile, which is what keeps other
workers from running them twice. Completions and failures are separate statements: when one has been
written and the other fails, only the other is retried (sending a written completion again would find the
row gone and count it as a lost lease).

A failure the database refuses for its values (a data error: a character the database's encoding cannot
hold, say) would be refused again on every retry and hold every later result behind it, so such a batch is
written row by row instead, each refused row with a safer message (ASCII only, then a fixed text), and a row
that cannot be written even so is left to the worker's reconciliation (docs/reliability.md, rule 8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from backfill.core.error_text import ascii_text
from backfill.core.jobs import Job
from backfill.core.pinned import PinnedConnection
from backfill.core.retry import ConsecutiveFailures
from backfill.core.run.queries import WorkerQueries

logger = logging.getLogger("backfill.worker")

# last_error of a failure whose own texts the database refused even escaped to ASCII (which cannot happen
# with PostgreSQL's encodings, but the job must not stay locked if it ever does).
UNSTORABLE_MESSAGE = "backfill: the error of this attempt could not be stored"


def is_data_error(error: BaseException) -> bool:
    """The statement was refused for the values it carried, not for the connection: sending the same rows
    again can never work. PostgreSQL's class 22 (data exception) on the server; on the client, asyncpg's
    DataError and UnicodeEncodeError are both ValueErrors (a value that cannot be encoded)."""
    return isinstance(error, (asyncpg.exceptions.DataError, ValueError))


def refusal(error: BaseException) -> str:
    """What to log about a refused statement: the error's class and SQLSTATE only. asyncpg's client-side
    message quotes the arguments, which hold handlers' error texts (and so, possibly, payload values)."""
    sqlstate = getattr(error, "sqlstate", None)
    return f"{type(error).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "")


@dataclass(slots=True)
class _Batch:
    """Results taken off the queues for one write; each part is emptied once it is written."""

    completed: list[Job]
    failed: list[Failure]
    kept: list[KeptOutcome] = field(default_factory=list)
    released_queues: bool = field(default=False)


@dataclass(frozen=True, slots=True)
class KeptOutcome:
    """A job that ended without failing (succeeded, or cancelled) and asked to keep its outcome: it is completed
    like any other, and its row of ``backfill_job_results`` is written by the same statement."""

    job: Job
    state: str  # "succeeded" or "cancelled"
    result: str | None  # the return value as JSON text; None when there is none to keep
    note: str | None  # why the return value was not kept, or the cancellation's reason
    duration: float | None  # seconds the attempt ran
    retention: float  # seconds to keep the row

    def without_value(self, why: str) -> KeptOutcome:
        """The same outcome with no return value, saying why: what a database that refused the value can hold."""
        return replace(self, result=None, note=f"the return value was not kept: the database refused it ({why})")


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to record: the message becomes ``last_error``."""

    job: Job
    message: str
    replacement_payload: str | None = None  # JSON text; batch jobs keep only their failed items
    permanent: bool = False
    retry_delay: float | None = None  # seconds until the next attempt; overrides Graphile's backoff when set
    error_type: str | None = None  # "KeyError", "myapp.errors.Upstream": what triage groups by
    traceback: str | None = None  # bounded, for the error history and the dead-letter queue
    retention: float | None = None  # seconds to keep the outcome should this failure be final; None: not kept

    def in_ascii(self) -> Failure:
        """The same failure with its texts in ASCII (escaped): what a database of any encoding can hold."""
        return replace(
            self,
            message=ascii_text(self.message),
            error_type=None if self.error_type is None else ascii_text(self.error_type),
            traceback=None if self.traceback is None else ascii_text(self.traceback),
        )

    def minimal(self) -> Failure:
        """The failure with a fixed message and nothing else that came from the handler: the last resort."""
        return replace(self, message=UNSTORABLE_MESSAGE, error_type=None, traceback=None, replacement_payload=None)

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
        self._kept: list[KeptOutcome] = []
        self._in_flight = _Batch([], [])
        self._pending = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.lost_leases = 0
        self.lost_completions = 0  # the part of lost_leases that were successes
        self.write_failures = 0  # failed writes so far; the worker reconciles its locks after one

    def complete(self, job: Job) -> None:
        completed = self._completed
        completed.append(job)
        if len(completed) == 1:  # the first since the flusher took a batch: the rest find it woken already
            self._idle.clear()
            self._pending.set()

    def fail(self, failure: Failure) -> None:
        self._failed.append(failure)
        self._idle.clear()
        self._pending.set()

    def keep(self, outcome: KeptOutcome) -> None:
        """Complete ``outcome.job`` and keep its outcome (see :class:`KeptOutcome`)."""
        self._kept.append(outcome)
        self._idle.clear()
        self._pending.set()

    def owned_job_ids(self) -> set[int]:
        """Jobs whose results are queued or being written: still locked by us, and rightly so."""
        batch = self._in_flight
        completed = [*self._completed, *batch.completed]
        failed = [*self._failed, *batch.failed]
        kept = [*self._kept, *batch.kept]
        return {job.id for job in completed} | {f.job.id for f in failed} | {o.job.id for o in kept}

    async def drained(self) -> None:
        """Wait until every result queued so far has been written."""
        await self._idle.wait()

    async def run(self) -> None:
        """Write queued results until cancelled; cancel only after :meth:`drained` if nothing may be lost."""
        failures = ConsecutiveFailures(initial=0.05, maximum=2.0)
        while True:
            await self._pending.wait()
            self._pending.clear()
            batch = _Batch(self._completed, self._failed, self._kept)
            self._completed, self._failed, self._kept = [], [], []
            self._in_flight = batch
            try:
                await self._write(batch)
            except Exception as error:  # connection trouble above all; anything else is retried too
                self.write_failures += 1
                # What is not written yet goes back in front (a part already written stays out of it), and
                # is tried again after a pause.
                self._completed[:0] = batch.completed
                self._failed[:0] = batch.failed
                self._kept[:0] = batch.kept
                self._in_flight = _Batch([], [])
                self._pending.set()
                if batch.released_queues:
                    self._on_queues_released()
                what = f"recording {len(batch.completed) + len(batch.failed) + len(batch.kept)} job result(s)"
                await asyncio.sleep(failures.failed(logger, what, error))
                continue
            self._in_flight = _Batch([], [])
            failures.succeeded()
            if batch.released_queues:
                self._on_queues_released()
            if not self._completed and not self._failed and not self._kept:
                self._idle.set()

    async def close(self) -> None:
        await self._connection.close()

    async def _write(self, batch: _Batch) -> None:
        connection = await self._connection.get()
        try:
            if batch.completed:
                await self._complete_on(connection, batch)
            if batch.kept:
                await self._together_or_one_by_one(
                    f"{len(batch.kept)} kept outcome(s)",
                    self._keep_on(connection, batch, batch.kept),
                    lambda: self._keep_one_by_one(connection, batch),
                )
            if batch.failed:
                await self._together_or_one_by_one(
                    f"{len(batch.failed)} failure(s)",
                    self._fail_on(connection, batch, batch.failed),
                    lambda: self._fail_one_by_one(connection, batch),
                )
        except BaseException:
            await self._connection.discard()
            raise

    @staticmethod
    async def _together_or_one_by_one(
        what: str, together: Awaitable[None], one_by_one: Callable[[], Awaitable[None]]
    ) -> None:
        """Await ``together``, one statement for ``what``; refused for its values (which every retry would be too),
        write them ``one_by_one`` instead, so that the refused rows cannot hold the others back."""
        try:
            await together
        except Exception as error:
            if not is_data_error(error):
                raise
            logger.warning(
                "recording %s in one statement was refused for their values (%s); recording them one by one",
                what,
                refusal(error),
            )
            await one_by_one()

    async def _complete_on(self, connection: Any, batch: _Batch) -> None:
        completed = batch.completed
        ids = [job.id for job in completed]
        rows = await connection.fetch(
            self._queries.complete_jobs, ids, self._worker_id, [job.locked_at for job in completed]
        )
        batch.completed = []  # written: never sent again
        batch.released_queues |= any(job.job_queue_id is not None for job in completed)
        self._note_lost("complete", ids, rows)
        if self._on_written is not None:
            self._tell_written(completed, rows, [], ())

    async def _keep_on(self, connection: Any, batch: _Batch, kept: Sequence[KeptOutcome]) -> None:
        """Complete ``kept`` (the batch's, or one of them) and keep their outcomes, in one statement."""
        ids = [outcome.job.id for outcome in kept]
        rows = await connection.fetch(
            self._queries.complete_jobs_keeping_results,
            ids,
            self._worker_id,
            [outcome.job.locked_at for outcome in kept],
            [outcome.state for outcome in kept],
            [outcome.result for outcome in kept],
            [outcome.note for outcome in kept],
            [outcome.duration for outcome in kept],
            [outcome.retention for outcome in kept],
        )
        written = {outcome.job.id for outcome in kept}
        batch.kept = [outcome for outcome in batch.kept if outcome.job.id not in written]  # never sent again
        batch.released_queues |= any(outcome.job.job_queue_id is not None for outcome in kept)
        self._note_lost("complete", ids, rows)
        if self._on_written is not None:
            self._tell_written([outcome.job for outcome in kept], rows, [], ())

    async def _fail_on(self, connection: Any, batch: _Batch, failed: Sequence[Failure]) -> None:
        """Write ``failed`` (the whole batch's failures, or one of them) in one statement."""
        ids = [f.job.id for f in failed]
        rows = await connection.fetch(
            self._queries.fail_jobs,
            ids,
            [f.message for f in failed],
            [f.replacement_payload for f in failed],
            [f.permanent for f in failed],
            [f.retry_delay for f in failed],
            self._worker_id,
            [f.job.locked_at for f in failed],
            [f.job.attempts for f in failed],
            [f.error_type for f in failed],
            [f.traceback for f in failed],
            [f.retention for f in failed],
        )
        written = {f.job.id for f in failed}
        batch.failed = [f for f in batch.failed if f.job.id not in written]
        batch.released_queues |= any(f.job.job_queue_id is not None for f in failed)
        self._note_lost("fail", ids, rows)
        if self._on_written is not None:
            self._tell_written([], (), failed, rows)

    async def _keep_one_by_one(self, connection: Any, batch: _Batch) -> None:
        """Write each kept outcome alone; one the database refuses (a return value its encoding cannot hold) is
        written again without its value, and the job still completes. Other errors propagate."""
        for outcome in list(batch.kept):
            try:
                await self._keep_on(connection, batch, [outcome])
            except Exception as error:
                if not is_data_error(error):
                    raise
                logger.error(
                    "job %s (%s): its return value was refused for its values (%s); kept without it",
                    outcome.job.id,
                    outcome.job.task_identifier,
                    refusal(error),
                )
                await self._keep_on(connection, batch, [outcome.without_value(refusal(error))])

    async def _fail_one_by_one(self, connection: Any, batch: _Batch) -> None:
        """Write each failure alone, so that the refused ones cannot hold the others back; a refused one is
        tried again in ASCII, then with a fixed message. Errors other than data errors propagate (what is
        written stays out of the batch)."""
        for failure in list(batch.failed):
            for attempt in (failure, failure.in_ascii(), failure.minimal()):
                try:
                    await self._fail_on(connection, batch, [attempt])
                    break
                except Exception as error:
                    if not is_data_error(error):
                        raise
                    logger.error(
                        "job %s (%s): its failure was refused for its values (%s); trying a safer form",
                        failure.job.id,
                        failure.job.task_identifier,
                        refusal(error),
                    )
            else:
                # Even the fixed message was refused: the values are not the problem. The row stays locked by
                # us without being owned, which the worker's reconciliation after a write failure releases.
                batch.failed = [f for f in batch.failed if f is not failure]
                self.write_failures += 1
                logger.error(
                    "job %s (%s): its failure could not be recorded in any form; the worker releases it",
                    failure.job.id,
                    failure.job.task_identifier,
                )

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
