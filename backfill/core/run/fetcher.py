"""The fetcher: when to fill the local queue, for ``run`` (a loop until stopped) and ``run_once`` (a drain).

The fetch loop wakes on a notification, on a slot freeing up while more jobs are known to wait, or every
``poll_interval`` seconds — the safety net for jobs inserted without NOTIFY and for future ``run_at``. Before
a fetch, it has the local queue release orphaned locks when some may exist: after a reconnect of the
listener, a failed write of the completer, a failed fetch, or a forfeit.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from backfill.core.events import Events
from backfill.core.retry import ConsecutiveFailures, backoff_delays
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.options import WorkerOptions
from backfill.core.run.slots import Slots
from backfill.core.run.waits import until_any

logger = logging.getLogger("backfill.worker")


class Results(Protocol):
    """The completer, as the fetcher sees it."""

    @property
    def write_failures(self) -> int: ...

    def owned_job_ids(self) -> set[int]:
        """Jobs whose results are queued or being written: still locked by us, and ours."""
        ...

    async def drained(self) -> None:
        """Until every result queued so far is written."""
        ...


class Notifications(Protocol):
    """The listener, as the fetcher sees it."""

    @property
    def reconnects(self) -> int: ...

    def check_alive(self) -> None: ...


class Fetcher:
    """Fills ``queue`` and starts runners in ``slots`` for the new jobs. See the module docstring."""

    def __init__(
        self,
        queue: LocalQueue,
        slots: Slots,
        results: Results,
        listener: Notifications | None,
        options: WorkerOptions,
        *,
        events: Events,
        wake: asyncio.Event,
        leads: LoopShare | None = None,
    ) -> None:
        self._queue = queue
        self._leads = leads  # marked urgent while a fetch runs, so that workers sharing the loop make way
        self._slots = slots
        self._results = results
        self._listener = listener
        self._poll_interval = options.poll_interval
        self._worker_id = options.worker_id
        self._events = events
        self._wake = wake  # something may be fetchable: a notification, a free slot, a poll
        self._seen_reconnects = 0
        self._seen_write_failures = 0

    async def _fill(self) -> int | None:
        """One fetch round, and runners for what it queued; the number of jobs, ``None`` when there was no room."""
        leads = self._leads
        if leads is not None:
            leads.hurry()
        try:
            fetched = await self._queue.fill(self._slots)
            if fetched is not None:
                self._slots.start()
        finally:
            if leads is not None:
                leads.calm_soon()
        return fetched

    async def _reconcile_if_needed(self) -> None:
        queue = self._queue
        reconnects = self._listener.reconnects if self._listener is not None else 0
        write_failures = self._results.write_failures
        if reconnects != self._seen_reconnects or write_failures != self._seen_write_failures:
            self._seen_reconnects, self._seen_write_failures = reconnects, write_failures
            queue.reconcile_needed = True
        if queue.reconcile_needed:
            await queue.reconcile(self._slots.running_ids.keys() | self._results.owned_job_ids())

    async def loop(self) -> None:
        """Fetch whenever woken, until the slots are stopping."""
        failures = ConsecutiveFailures(initial=0.1, maximum=self._poll_interval)
        while not self._slots.stopping:
            self._wake.clear()
            try:
                await self._reconcile_if_needed()
                fetched = await self._fill()
            except Exception as error:  # connection trouble above all; whatever it is, retry after a pause
                # The failed statement may have committed (a claim whose reply was lost): look for orphans.
                self._queue.reconcile_needed = True
                self._events.emit("worker:getJob:error", worker_id=self._worker_id, error=error)
                await until_any(
                    self._wake, within=failures.failed(logger, f"worker {self._worker_id}: fetching jobs", error)
                )
                continue
            failures.succeeded()
            if fetched and self._queue.wants_refill():
                continue  # a full batch came back and jobs were used meanwhile: more is waiting
            await until_any(self._wake, within=self._poll_interval)
            if self._listener is not None:
                self._listener.check_alive()

    async def drain(self, stop_requested: asyncio.Event) -> None:
        """``run_once``: fetch and run until nothing runnable is left and every result is written, or until
        ``stop_requested`` is set."""
        queue, slots = self._queue, self._slots
        rechecks = backoff_delays(initial=0.005, maximum=0.2)
        while not stop_requested.is_set():
            await self._reconcile_if_needed()
            fetched = await self._fill()
            if not fetched and not queue.heap and not slots.running:
                # Results free named queues and may have enqueued follow-up jobs: write them, look again.
                await self._results.drained()
                if await self._fill():
                    continue
                if not await queue.runnable_exists():
                    return
                # Runnable rows that the claim skipped: another fetch held their locks for its statement.
                # Look again shortly rather than report "nothing left" with jobs waiting.
                await until_any(stop_requested, within=next(rechecks))
                continue
            if fetched and queue.wants_refill():
                continue  # keep filling while the database has more and we have room
            # Wait for a slot to finish, then until the local queue is low enough to be worth a refill.
            # No await separates each state check from its clear(), so no wake-up is lost.
            # A stop request ends the wait too: a long job must not delay a stop of run_once.
            slots.slot_freed.clear()
            await until_any(slots.slot_freed, stop_requested)
            while len(queue.heap) > queue.refill_below and not stop_requested.is_set():
                slots.slot_freed.clear()
                await until_any(slots.slot_freed, stop_requested)
