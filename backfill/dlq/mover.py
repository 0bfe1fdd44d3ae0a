"""The mover: the side task that keeps the dead-letter queue filled and tidy.

Two paths feed it:

* **Right away.** :meth:`DeadLetterMover.attach` listens to a core worker's ``results:written`` event (sent
  after the results were committed). The jobs of ``final`` (failures that used their last attempt) are moved
  at once; the ``completed`` jobs that carry ``backfill:dlq=<id>`` (requeues that succeeded) have their entry
  deleted. Events arrive in bursts (one per completer flush); they are gathered while a move is in flight and
  handled together by one task, so a burst costs a few statements, not one per event.
* **Every ``interval`` seconds** (jittered ±20%, so runners started together spread out), :meth:`run` makes
  a full pass: every permanently failed job, in batches (jobs failed by Node workers, or by a backfill worker
  whose event was missed: a crash between commit and move, a failed move), then the entries of finished
  requeues (the job is gone and did not come back: it succeeded, perhaps on a Node worker).

Nothing here is fatal: a failed pass is logged (the first of an outage as a warning, then at most one every
30 seconds) and the next pass tries again; jobs wait safely in the jobs table meanwhile.

The full pass scans ``_private_jobs`` (Graphile's schema has no index on failed jobs, and must stay Node's),
which is cheap while finished jobs are deleted as they are in Graphile, and is why the interval is seconds,
not milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from backfill.core import ConfigurationError, Event, Events, Job, SchemaName
from backfill.core.extension import ConsecutiveFailures, Interval, PeriodicService, check_number
from backfill.dlq.migrations import migrate_dlq
from backfill.dlq.models import MovedJob, entry_id_of
from backfill.dlq.move import GC_BATCH, MOVE_BATCH, forget_finished_requeues, forget_succeeded, move_batch

logger = logging.getLogger("backfill.dlq")

OnMoved = Callable[[Sequence[MovedJob]], object]


class DeadLetterMover:
    """Moves permanently failed jobs into the dead-letter queue; see the module docstring.

    ``pool`` is used as is and never closed. ``on_moved``, if given, is called with the jobs of every
    committed move (for metrics); one that raises is logged and ignored.
    """

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        schema: str | SchemaName | None = None,
        *,
        interval: float = 5.0,
        on_moved: OnMoved | None = None,
    ) -> None:
        if not isinstance(pool, asyncpg.Pool):
            raise ConfigurationError("DeadLetterMover needs an asyncpg.Pool")
        # Infinity has always been accepted: run() then makes its first pass and no periodic ones.
        check_number("interval", interval, above=0, finite=False, must="a positive number of seconds")
        if on_moved is not None and not callable(on_moved):
            raise ConfigurationError("on_moved must be a callable taking the moved jobs")
        self.schema = SchemaName.coerce(schema)
        self.interval = float(interval)
        self._pool = pool
        self._on_moved = on_moved
        self._to_move: set[int] = set()
        self._succeeded: set[tuple[int, int]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._failures = ConsecutiveFailures()
        self._unsubscribe: list[Callable[[], None]] = []

    # -- the immediate path ----------------------------------------------------------------------------

    def attach(self, events: Events) -> Callable[[], None]:
        """Listen to ``results:written`` on ``events`` (a worker's, before the worker starts: it only reports
        results when someone listens at start-up); returns a function that stops listening."""
        unsubscribe = events.on("results:written", self._on_results_written)
        self._unsubscribe.append(unsubscribe)
        return unsubscribe

    def detach(self) -> None:
        """Stop listening to every ``Events`` attached so far."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()

    def _on_results_written(self, event: Event) -> None:
        final: Sequence[Job] = event.get("final") or ()
        completed: Sequence[Job] = event.get("completed") or ()
        self._to_move.update(job.id for job in final)
        for job in completed:
            if job.flags and (entry_id := entry_id_of(job.flags)) is not None:
                self._succeeded.add((entry_id, job.id))
        if not self._to_move and not self._succeeded:
            return
        if self._flusher is None or self._flusher.done():
            try:
                self._flusher = asyncio.get_running_loop().create_task(self._flush(), name="backfill-dlq-flush")
            except RuntimeError:  # no loop (emitted from a thread): the periodic pass will take them
                self._to_move.clear()
                self._succeeded.clear()

    async def _flush(self) -> None:
        # Whatever arrives while a statement runs is taken by the next turn of this loop.
        while self._to_move or self._succeeded:
            job_ids, self._to_move = sorted(self._to_move), set()
            succeeded, self._succeeded = sorted(self._succeeded), set()
            try:
                await self._move(job_ids)
                if succeeded:
                    async with self._pool.acquire() as connection:
                        await forget_succeeded(connection, self.schema, succeeded)
            except Exception as error:  # left for the periodic pass, which finds both by itself
                self._failures.failed(logger, "moving failed jobs to the dead-letter queue", error)
            else:
                self._failures.succeeded()

    async def flushed(self) -> None:
        """Wait until the moves asked for by events so far are done (tests, shutdown)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    # -- full passes -------------------------------------------------------------------------------------

    async def move_now(self) -> int:
        """One full pass now: move every permanently failed job, forget finished requeues; the jobs moved."""
        moved = await self._move(None)
        async with self._pool.acquire() as connection:
            while True:
                forgotten = await forget_finished_requeues(connection, self.schema)
                if forgotten:
                    logger.info("forgot %s dead-letter entries whose requeued job finished", len(forgotten))
                if len(forgotten) < GC_BATCH:
                    break
        return moved

    async def run(self) -> None:
        """Install the dead-letter table if needed, then a full pass every ``interval`` seconds until
        cancelled. Never returns; failures are logged and retried at the next pass."""
        migrated = False

        async def full_pass() -> int:
            nonlocal migrated
            if not migrated:
                await migrate_dlq(self._pool, self.schema)
                migrated = True
            return await self.move_now()

        service = PeriodicService(
            name="dlq-mover",
            what="the dead-letter pass",
            run_once=full_pass,
            interval=Interval.around(self.interval),
            logger=logger,
            at_start=True,  # jobs may have died while no mover ran
            failures=self._failures,  # one outage, whichever path meets it: warned about once
        )
        await service.run()

    async def close(self) -> None:
        """Detach, and wait for a move in flight (a cancelled one rolls back: its jobs stay in the jobs table)."""
        self.detach()
        await self.flushed()

    # -- shared ------------------------------------------------------------------------------------------

    async def _move(self, job_ids: Sequence[int] | None) -> int:
        """Move the given jobs (``None``: every permanently failed job) in batches; the count moved."""
        total = 0
        async with self._pool.acquire() as connection:
            if job_ids is None:
                while True:
                    moved = await move_batch(connection, self.schema, job_ids=None, limit=MOVE_BATCH)
                    total += self._report(moved)
                    # Fewer than a batch: nothing more, or the rest is locked by another mover right now.
                    if len(moved) < MOVE_BATCH:
                        break
            else:
                for start in range(0, len(job_ids), MOVE_BATCH):
                    chunk = job_ids[start : start + MOVE_BATCH]
                    total += self._report(await move_batch(connection, self.schema, job_ids=chunk, limit=len(chunk)))
        return total

    def _report(self, moved: list[MovedJob]) -> int:
        if not moved:
            return 0
        returned = sum(1 for job in moved if job.returned)
        logger.info(
            "moved %s job(s) to the dead-letter queue (%s back to the entry they were requeued from): %s",
            len(moved),
            returned,
            _preview([job.job_id for job in moved]),
        )
        if self._on_moved is not None:
            try:
                self._on_moved(moved)
            except Exception:
                logger.exception("on_moved callback %r raised; ignored", self._on_moved)
        return len(moved)


def _preview(ids: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(map(str, ids[:limit]))
    return f"[{shown}{f' … and {len(ids) - limit} more' if len(ids) > limit else ''}]"
