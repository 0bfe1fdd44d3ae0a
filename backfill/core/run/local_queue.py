"""The local queue: jobs this worker has claimed and not started yet, and what holding a claim obliges it to.

The fetcher claims jobs in batches (``FOR UPDATE SKIP LOCKED``, one job per named queue per batch); they wait
here in a heap ordered as the database would run them, ``(priority, run_at, id)``, and the runner slots
(:mod:`backfill.core.run.slots`) take them best first. A plain ``heapq`` rather than ``asyncio.Queue``:
runners are started on demand and never wait on it, which saves a future per job on the hot path.

A fetch asks for the free slots plus about ``lookahead`` seconds of work, estimated from the throughput the
slots measure, capped by ``local_queue_size`` (see :class:`~backfill.core.run.options.WorkerOptions`): no-op
jobs are fetched hundreds at a time, while slow jobs are fetched a free slot at a time and stay available to
other workers instead of being hoarded here.

Holding claims comes with duties, and the queue carries them out:

* a **suspect** job (``SUSPECT_FLAG``, set by :mod:`backfill.core.upkeep.sweeper` on a job found again and
  again in dead workers) runs alone: every other claimed job is handed back, nothing more is fetched, and it
  starts once the jobs already running have finished, so that another death is evidence against it only;
* **reconciliation** releases rows locked by this worker that nothing here owns (claims whose reply was lost
  in a reconnect, or jobs dropped unstarted), between two fetches;
* at shutdown, unstarted jobs are **handed back** with their attempt refunded;
* when the worker's claims were released (it was declared dead) or one was taken from it (a lost lease),
  unstarted jobs are **forfeited**: they may be running elsewhere already (docs/reliability.md, rule 9).

The database is reached only through :class:`ClaimSource`, which :class:`~backfill.core.run.claims.Claims`
is, and the slots only through :class:`RunningJobs`.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from backfill.core.events import Events
from backfill.core.jobs import SUSPECT_FLAG, Job
from backfill.core.retry import backoff_delays
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.pause import FetchPause

logger = logging.getLogger("backfill.worker")

# (priority, run_at, id, job): the local queue hands out jobs in the order the database would.
QueueItem = tuple[int, datetime, int, Job]


class ClaimSource(Protocol):
    """Where claims come from and go back to: one worker's claim connection."""

    async def claim(self, count: int) -> list[Job]:
        """Lock up to ``count`` runnable jobs for this worker."""
        ...

    async def hand_back(self, jobs: Sequence[Job]) -> int:
        """Unlock claimed jobs that never started, refunding their attempt; how many were still ours."""
        ...

    async def release_orphans(self, owned: Collection[int]) -> tuple[list[int], int]:
        """Unlock rows locked by us whose id is not in ``owned``; the jobs released and the queue locks freed."""
        ...

    async def runnable_exists(self) -> bool:
        """Whether a job this worker may claim is runnable now, locks aside."""
        ...


class RunningJobs(Protocol):
    """The runner slots, as the local queue sizes its fetches by them."""

    @property
    def concurrency(self) -> int: ...

    @property
    def running(self) -> int:
        """Handlers running now."""
        ...

    @property
    def finished(self) -> int:
        """Jobs finished so far: the throughput estimate counts them."""
        ...


class LocalQueue:
    """Claimed, unstarted jobs of one worker. See the module docstring.

    The slots' runners read and write some attributes directly, on the hot path: they pop from ``heap``,
    clear ``isolated`` when the suspect ends, and wake the fetcher when ``more_available`` and the heap is at
    ``refill_below`` or under.
    """

    def __init__(
        self,
        claims: ClaimSource,
        options: WorkerOptions,
        *,
        summary: RunSummary,
        events: Events,
        wake: asyncio.Event,
    ) -> None:
        self._claims = claims
        self._size = options.local_queue_size
        self._lookahead = options.lookahead
        self._summary = summary
        self._events = events
        self._worker_id = options.worker_id
        self._wake = wake  # set when the fetcher has something to do: a reconciliation, a refill
        self.heap: list[QueueItem] = []
        self.more_available = False  # the last claim came back full: the database has more for us
        self.refill_below = 0  # fetch again once the heap is this short (with more_available)
        # A suspect job (SUSPECT_FLAG) claimed to run alone; started once nothing else runs here.
        self.isolated: Job | None = None
        self._isolated_started = False
        self.reconcile_needed = False
        self.pause: FetchPause | None = None  # while work is paused: claimed jobs it holds are not started
        # Throughput estimate (jobs finished per second), for sizing fetches.
        self._rate = 0.0
        self._rate_mark = (time.monotonic(), 0)

    def fetch_size(self, runners: RunningJobs) -> int:
        """How many jobs to claim now: free slots plus about ``lookahead`` seconds of queued work."""
        now = time.monotonic()
        finished = runners.finished
        mark_time, mark_count = self._rate_mark
        if now - mark_time >= 0.05:
            instant = (finished - mark_count) / (now - mark_time)
            self._rate = instant if self._rate == 0 else 0.5 * self._rate + 0.5 * instant
            self._rate_mark = (now, finished)
        free_slots = runners.concurrency - runners.running
        ahead = min(self._size, int(self._rate * self._lookahead))
        # Refill once a quarter of the lookahead is used: the next batch then arrives while three quarters
        # (~75 ms of work) are still queued, which covers a fetch round trip even under load.
        self.refill_below = ahead - ahead // 4
        return min(self._size, max(0, free_slots + ahead - len(self.heap)))

    def wants_refill(self) -> bool:
        """A full batch came back and jobs were used since: more is waiting, fetch again at once."""
        return self.more_available and len(self.heap) <= self.refill_below

    async def fill(self, runners: RunningJobs) -> int | None:
        """One fetch round: the number of jobs queued, for which runners must now be started (possibly 0),
        or ``None`` when there was no room to fetch and nothing to start."""
        if self.isolated is not None:
            return self._queue_isolated_when_idle(runners)
        want = self.fetch_size(runners)
        if want <= 0:
            return None
        jobs = await self._claims.claim(want)
        self.more_available = len(jobs) >= want
        if not jobs:
            self._events.emit("worker:getJob:empty", worker_id=self._worker_id)
        suspect = next((job for job in jobs if job.flags and SUSPECT_FLAG in job.flags), None)
        if suspect is not None:
            await self._isolate(suspect, jobs, runners)
            return self._queue_isolated_when_idle(runners)
        if self.pause is not None:  # paused while this claim was in flight: what it holds goes back
            jobs = self._without_paused(jobs, self.pause)
        heap = self.heap
        for job in jobs:  # when stopping, hand_back_unstarted returns whatever is left here
            heapq.heappush(heap, (job.priority, job.run_at, job.id, job))
        return len(jobs)

    async def _isolate(self, suspect: Job, claimed: list[Job], runners: RunningJobs) -> None:
        """Run ``suspect`` alone: hand back every other claimed job, unstarted, fetch nothing more, and start
        it once the jobs already running have finished."""
        others = [job for job in claimed if job is not suspect] + [item[3] for item in self.heap]
        self.heap.clear()
        self.isolated = suspect
        self._isolated_started = False
        logger.warning(
            "worker %s: job %s (%s) was running in two or more workers that died; running it alone, after the %s "
            "job(s) running here finish, so that another death is evidence against it only",
            self._worker_id,
            suspect.id,
            suspect.task_identifier,
            runners.running,
        )
        try:
            await self._claims.hand_back(others)
        except Exception as error:
            # They stay locked by us without being owned: the reconciliation after this outage releases them.
            self.reconcile_needed = True
            logger.warning("worker %s could not hand back %s job(s): %s", self._worker_id, len(others), error)

    def _queue_isolated_when_idle(self, runners: RunningJobs) -> int | None:
        if self.isolated is None or self._isolated_started or runners.running or self.heap:
            return None
        self._isolated_started = True
        job = self.isolated
        heapq.heappush(self.heap, (job.priority, job.run_at, job.id, job))
        return 1

    async def runnable_exists(self) -> bool:
        """Whether a job this worker may claim is runnable now, locks aside (see ``Claims.runnable_exists``)."""
        return await self._claims.runnable_exists()

    async def reconcile(self, owned_elsewhere: Collection[int]) -> None:
        """Release rows locked by us that nothing here owns (claims whose reply was lost in a reconnect).

        ``owned_elsewhere`` holds the jobs the slots run and the results not yet written. Call it between
        fetches, so that no claim is in flight that the owned set could miss.
        """
        # Cleared first: a reason to reconcile that arrives while this one runs (a lost lease) needs another.
        # A failure sets it again (the fetch loop's error path).
        self.reconcile_needed = False
        owned = {item[2] for item in self.heap}
        owned.update(owned_elsewhere)
        released, queues = await self._claims.release_orphans(owned)
        if released or queues:
            logger.warning(
                "worker %s released %s job(s) and %s queue lock(s) it held without owning them (claims whose "
                "reply was lost in a reconnect, or that it dropped unstarted): %s",
                self._worker_id,
                len(released),
                queues,
                released[:20],
            )
            self._events.emit("worker:reconciled", worker_id=self._worker_id, released=released)

    def apply_pause(self, pause: FetchPause) -> None:
        """Start none of the claimed jobs ``pause`` holds: they leave the queue and go back to the database (the
        reconciliation before the next fetch unlocks them, attempt refunded), so paused work stays queued."""
        self.pause = pause if pause.active else None
        if self.pause is None or not self.heap:
            return
        kept = self._without_paused([item[3] for item in self.heap], self.pause)
        if len(kept) < len(self.heap):
            self.heap[:] = [(job.priority, job.run_at, job.id, job) for job in kept]
            heapq.heapify(self.heap)

    def _without_paused(self, jobs: list[Job], pause: FetchPause) -> list[Job]:
        kept: list[Job] = []
        held: list[Job] = []
        for job in jobs:
            (held if pause.holds(job) else kept).append(job)
        if not held:
            return jobs
        self.reconcile_needed = True
        self._wake.set()
        logger.info(
            "worker %s gives back %s claimed job(s) of paused work: %s",
            self._worker_id,
            len(held),
            [job.id for job in held[:20]],
        )
        return kept

    def take(self, job_id: int) -> Job | None:
        """Remove the claimed, unstarted job ``job_id`` from the queue (to cancel it); ``None`` if not here."""
        for position, item in enumerate(self.heap):
            if item[2] == job_id:
                self.heap[position] = self.heap[-1]
                self.heap.pop()
                heapq.heapify(self.heap)
                return item[3]
        return None

    def _take_unstarted(self) -> list[Job]:
        """Empty the queue, the suspect waiting to run alone included; the jobs it held."""
        jobs = [item[3] for item in self.heap]
        self.heap.clear()
        if self.isolated is not None and not self._isolated_started:
            jobs.append(self.isolated)
            self.isolated = None
        return jobs

    async def hand_back_unstarted(self, give_up: asyncio.Event) -> bool:
        """Give claimed, unstarted jobs back (attempt refunded), retrying until it works or ``give_up`` is
        set (a second stop request); ``False`` if that could not be done."""
        jobs = self._take_unstarted()
        if not jobs:
            return True
        for delay in backoff_delays(initial=0.05, maximum=1.0):
            try:
                returned = await self._claims.hand_back(jobs)
                break
            except Exception as error:  # retried until it works or a second stop request
                if give_up.is_set():
                    logger.error(
                        "worker %s could not return %s unstarted job(s): %s", self._worker_id, len(jobs), error
                    )
                    return False
                await asyncio.sleep(delay)
        self._summary.returned += returned
        logger.info("worker %s returned %s unstarted job(s)", self._worker_id, returned)
        return True

    def forfeit_unstarted(self, reason: str) -> None:
        """Drop the claimed jobs that have not started: our claims were released (or one was taken from us),
        so they may be running elsewhere already, and starting them here would run their side effects twice.

        Rows still locked by us that nothing here owns any more (those dropped, or a job claimed afresh while
        its released attempt still ran here) are released by the reconciliation before the next fetch.
        """
        dropped = self._take_unstarted()
        self.reconcile_needed = True
        self._wake.set()
        if not dropped:
            return
        self._summary.forfeited += len(dropped)
        logger.warning(
            "worker %s dropped %s claimed job(s) it had not started, because %s: %s",
            self._worker_id,
            len(dropped),
            reason,
            [job.id for job in dropped[:20]],
        )
