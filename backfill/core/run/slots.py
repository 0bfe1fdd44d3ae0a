"""The runner slots: up to ``concurrency`` runners taking jobs from the local queue and running their handlers.

A runner is started when jobs arrive and a slot is free, and it keeps taking jobs, best first, until the local
queue is empty or the worker is stopping: an idle worker holds no runner task, and a busy one does not start
a task per job.

Jobs run on a fast path (an ``async def`` taking only the payload is awaited directly) unless something
needs the slower, observed path in :mod:`backfill.core.run.execution`: a timeout, an interceptor, a payload
model, a context, or a listener for ``job:*`` events. Either way, how the attempt ended goes to the
:class:`~backfill.core.run.recorder.OutcomeRecorder` (the fast path's plain success straight to the completer),
and, while anyone listens to ``attempts:batch``, to the :class:`~backfill.core.run.attempt_log.AttemptLog`:
observers that only count (metrics) keep the fast path.

The slots set up where their results go: the recorder, the completer (run by the worker as a side task), and
the events for what the completer reports (``results:written``, ``job:lostLease``, the latter also forfeiting
the local queue's unstarted jobs).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg

from backfill.core.events import Events
from backfill.core.flags import per_flag_set
from backfill.core.hooks import Hooks
from backfill.core.jobs import Job, retention_of, timeout_of
from backfill.core.run.attempt_log import AttemptLog
from backfill.core.run.completer import Completer, Failure
from backfill.core.run.context import JobContext, job_logger
from backfill.core.run.current import current_job
from backfill.core.run.execution import AttemptRunner, is_batch_result, settle_batch
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.queries import WorkerQueries
from backfill.core.run.recorder import OutcomeRecorder
from backfill.core.run.threads import DaemonThreadExecutor
from backfill.core.run.waits import until_any
from backfill.core.tasks import TaskRegistry

logger = logging.getLogger("backfill.worker")

PlainHandler = Callable[[Any], Awaitable[Any]]

_JOBS_BETWEEN_YIELDS = 8


class CancelAnswer(enum.Enum):
    """What :meth:`Slots.cancel` found: the job running here, claimed here and not started, or neither."""

    RUNNING = "running"
    UNSTARTED = "unstarted"
    NOT_HERE = "not_here"


set_current_job = current_job.set
# Events that only the observed path emits: while anyone listens to one, every job takes that path.
_JOB_EVENTS = ("job:start", "job:success", "job:error", "job:failed", "job:complete", "job:skipped", "job:timeout")


@per_flag_set
def observed_for_flags(flags: frozenset[str]) -> bool:
    """Whether a job's flags send it down the observed path: a timeout of its own, or a result to keep."""
    return timeout_of(flags) is not None or retention_of(flags) is not None


def plain_async_handlers(registry: TaskRegistry) -> dict[str, PlainHandler]:
    """Handlers a runner may call directly: async, payload only, no payload model, no timeout, no kept result."""
    return {
        d.identifier: d.handler
        for d in registry
        if d.is_async
        and not d.wants_context
        and d.payload_model is None
        and d.timeout is None
        and d.keep_result is None
    }


class Slots:
    """The runners of one worker and the bookkeeping of the jobs they run. See the module docstring."""

    def __init__(
        self,
        queue: LocalQueue,
        options: WorkerOptions,
        *,
        pool: asyncpg.Pool[Any],
        queries: WorkerQueries,
        registry: TaskRegistry,
        plain_async: Mapping[str, PlainHandler],
        summary: RunSummary,
        events: Events,
        hooks: Hooks,
        wake: asyncio.Event,
        follows: LoopShare | None = None,
    ) -> None:
        self.concurrency = options.concurrency
        self._follows = follows  # while it is urgent, runners yield the loop after every job
        self._grace = options.shutdown_grace_period
        self._cancel_grace = options.cancel_grace_period
        self._queue = queue
        self._plain_async = plain_async
        self._summary = summary
        self._events = events
        self._hooks = hooks
        self._worker_id = options.worker_id
        self._pool = pool  # for the handlers' contexts
        self._schema = options.schema_name
        # Set when a fetch may find something: named queues were unlocked, the suspect can start, a refill is due.
        self._wake = wake
        self.completer = Completer(
            pool,
            queries,
            self._worker_id,
            on_queues_released=wake.set,
            on_lost=self._on_lost_lease,
            on_written=self._on_results_written if events.listens("results:written") else None,
        )
        self._attempt_log = AttemptLog(events, self._worker_id)
        self._recorder = OutcomeRecorder(
            self.completer,
            summary,
            events,
            self._attempt_log,
            worker_id=self._worker_id,
            interrupted_retry_delay=options.interrupted_retry_delay,
            retry_planner=hooks.retry_planner,
            registry=registry,
        )
        # Synchronous handlers run in these threads, one per slot (spares are added for stuck ones).
        self._threads = DaemonThreadExecutor(self.concurrency, thread_name_prefix="backfill-sync-task")
        self._attempts = AttemptRunner(
            registry,
            hooks,
            self._threads,
            context_for=self._context_for,
            cancel_grace=options.cancel_grace_period,
            on_stuck=self._on_stuck,
        )
        self.slot_freed = asyncio.Event()
        self.stopping = False  # runners finish their current job and take no other; the fetcher stops
        self.tasks: set[asyncio.Task[None]] = set()
        # Jobs whose handlers are running. A count, not a set of job ids: after a released lock, this worker
        # may be running two attempts of the same job at once (the stale one is fenced out when it ends).
        self.running = 0
        self.running_ids: dict[int, int] = {}  # job id -> attempts of it running here (see above)
        self.finished = 0  # for the local queue's throughput estimate
        self._observed_revision = -1
        self._job_events_observed = False
        self._registry = registry
        # What each runner is running (runner task -> job, None between jobs), to find a job to cancel; and
        # the contexts of running observed attempts, whose abort signal a cancel sets.
        self._current: dict[asyncio.Task[None], Job | None] = {}
        self._contexts: dict[int, JobContext] = {}
        self._cancel_timers: dict[int, asyncio.TimerHandle] = {}

    def start(self) -> None:
        """Start runners for the jobs now queued, up to ``concurrency``."""
        queue = self._queue
        while queue.heap and len(self.tasks) < self.concurrency and not self.stopping:
            runner = asyncio.create_task(self._runner())
            self.tasks.add(runner)
            runner.add_done_callback(self.tasks.discard)

    def cancel(self, job_id: int, reason: str) -> CancelAnswer:
        """Cancel job ``job_id`` if this worker holds it: a running ``async def`` handler is cancelled (its task
        gets ``CancelledError``); a running ``def`` handler has its context's abort signal set and is cancelled
        ``cancel_grace_period`` later if it has not returned by then (its thread cannot be stopped); a claimed
        job not started yet leaves the local queue. Either way the job ends as cancelled (completed, never
        retried: see OutcomeRecorder.cancelled)."""
        for runner, job in self._current.items():
            if job is None or job.id != job_id:
                continue
            if job_id in self._recorder.cancels:
                return CancelAnswer.RUNNING  # asked already
            self._recorder.cancels[job_id] = reason
            context = self._contexts.get(job_id)
            if context is not None:
                context.abort_signal.set()
            definition = self._registry.get(job.task_identifier)
            if definition is not None and not definition.is_async:
                # A thread cannot be interrupted: it may see the abort signal and return; if not, give up on it.
                self._cancel_timers[job_id] = asyncio.get_running_loop().call_later(
                    self._cancel_grace, self._cancel_thread, runner, job
                )
            else:
                runner.cancel()
            return CancelAnswer.RUNNING
        job = self._queue.take(job_id)
        if job is None:
            return CancelAnswer.NOT_HERE
        self._recorder.cancelled(job, reason, started=False)
        return CancelAnswer.UNSTARTED

    def _cancel_thread(self, runner: asyncio.Task[None], job: Job) -> None:
        self._cancel_timers.pop(job.id, None)
        if self._current.get(runner) is job:
            logger.error(
                "job %s (%s): its synchronous handler ignored the cancellation's abort signal for %ss; its slot is "
                "given up (the thread runs on in the background)",
                job.id,
                job.task_identifier,
                self._cancel_grace,
            )
            self._threads.add_thread()  # other synchronous jobs must not wait for that thread
            runner.cancel()

    async def _runner(self) -> None:
        """Run jobs from the local queue, best first, until it is empty or the worker is stopping."""
        current = self._current
        me = asyncio.current_task()
        assert me is not None
        current[me] = None
        try:
            await self._run_jobs(me, current)
        finally:
            del current[me]

    async def _run_jobs(self, me: asyncio.Task[None], current: dict[asyncio.Task[None], Job | None]) -> None:
        queue = self._queue
        local = queue.heap
        plain_async = self._plain_async
        running_ids = self.running_ids
        completer = self.completer
        recorder = self._recorder
        cancels = recorder.cancels  # jobs an operator cancelled while they ran (Slots.cancel)
        attempt_log = self._attempt_log
        record_start, record_success = attempt_log.started.append, attempt_log.succeeded.append
        wall_clock, monotonic = time.time, time.monotonic
        follows = self._follows
        events, hooks = self._events, self._hooks
        since_yield = 0
        while local and not self.stopping:
            job = heapq.heappop(local)[3]
            current[me] = job
            self.running += 1
            running_ids[job.id] = running_ids.get(job.id, 0) + 1
            set_current_job(job)
            try:
                # A per-job timeout or kept result (flags) needs the observed path; other flags (a retry policy, a
                # lane) do not.
                timed = job.flags and observed_for_flags(job.flags)
                if events.revision != self._observed_revision:
                    self._refresh_observed()
                observed = self._job_events_observed or hooks.before_run or hooks.after_run
                handler = None if timed or observed else plain_async.get(job.task_identifier)
                if handler is None:
                    await self._run_observed(job)
                elif attempt_log.active:
                    # The fast path with the attempt recorded for attempts:batch (metrics), inline: a coroutine
                    # of its own per job cost more than the recording.
                    record_start((job, wall_clock()))
                    if not attempt_log.scheduled:
                        attempt_log.recorded()
                    started = monotonic()
                    try:
                        value = await handler(job.payload)
                    except (Exception, asyncio.CancelledError) as error:
                        recorder.error(job, error, monotonic() - started)
                    else:
                        if is_batch_result(job.payload, value) or (cancels and job.id in cancels):
                            recorder.outcome(job, await settle_batch(job, value), monotonic() - started)
                        else:
                            self._summary.succeeded += 1
                            record_success((job, monotonic() - started))
                            if not attempt_log.scheduled:  # the batch with its start went out while it ran
                                attempt_log.recorded()
                            completer.complete(job)
                else:
                    # The common case (an async handler taking the payload alone, nothing observing) without
                    # the observed path's extra coroutines and bookkeeping per job.
                    try:
                        value = await handler(job.payload)
                    except (Exception, asyncio.CancelledError) as error:
                        recorder.error(job, error)
                    else:
                        if is_batch_result(job.payload, value) or (cancels and job.id in cancels):
                            recorder.outcome(job, await settle_batch(job, value), 0.0)
                        else:
                            self._summary.succeeded += 1
                            completer.complete(job)
            finally:
                current[me] = None
                set_current_job(None)
                self.running -= 1
                left = running_ids[job.id] - 1
                if left:
                    running_ids[job.id] = left
                else:
                    del running_ids[job.id]
                if queue.isolated is not None:
                    if queue.isolated is job:
                        queue.isolated = None  # the suspect ended without killing us: back to normal
                    self._wake.set()  # either fetch normally again, or start the suspect once idle
                self.finished += 1
                self.slot_freed.set()
                if queue.more_available and len(local) <= queue.refill_below:
                    self._wake.set()
            since_yield += 1
            if since_yield >= _JOBS_BETWEEN_YIELDS or (follows is not None and follows.urgent):
                # A handler that never suspends would otherwise keep the loop from the fetcher and the
                # completer for a whole local queue's worth of jobs; every 8 jobs lets the fetcher start
                # its next claim sooner than every 32 did. Every job while a worker we follow on this loop
                # picks up jobs (the Fast lane beside this one): its pickup needs several short turns.
                since_yield = 0
                await asyncio.sleep(0)

    def _refresh_observed(self) -> None:
        """The listeners changed: whether a job:* event is listened to (jobs must then take the observed path,
        as they must while an interceptor is registered), and whether the attempt log is."""
        self._observed_revision = self._events.revision
        self._job_events_observed = any(self._events.listens(name) for name in _JOB_EVENTS)
        self._attempt_log.refresh()

    async def _run_observed(self, job: Job) -> None:
        self._events.emit("job:start", worker_id=self._worker_id, job=job)
        if self._attempt_log.active:
            self._attempt_log.started.append((job, time.time()))
            self._attempt_log.recorded()
        started = time.monotonic()
        try:
            outcome = await self._attempts.run(job)
        except asyncio.CancelledError as error:
            # The worker is cancelling the job (recorded as interrupted, and raised on), or an operator is
            # (recorded as cancelled; the runner goes on).
            by_operator = job.id in self._recorder.cancels
            self._recorder.error(job, error)
            if not by_operator:
                raise
            return
        finally:
            self._contexts.pop(job.id, None)
            timer = self._cancel_timers.pop(job.id, None) if self._cancel_timers else None
            if timer is not None:
                timer.cancel()
        self._recorder.outcome(job, outcome, time.monotonic() - started)

    def _context_for(self, job: Job) -> JobContext:
        context = self._contexts[job.id] = JobContext(
            job=job,
            worker_id=self._worker_id,
            pool=self._pool,
            schema=self._schema,
            logger=job_logger(logging.getLogger("backfill.task"), job, self._worker_id),
            transform=self._hooks.transform if self._hooks.before_schedule else None,
        )
        return context

    def _on_lost_lease(self, action: str, job_ids: list[int]) -> None:
        self._queue.forfeit_unstarted(f"it lost the lease on {len(job_ids)} job(s)")
        self._events.emit("job:lostLease", worker_id=self._worker_id, job_ids=job_ids, action=action)

    def _on_results_written(self, completed: Sequence[Job], failed: Sequence[Failure]) -> None:
        self._events.emit(
            "results:written",
            worker_id=self._worker_id,
            completed=list(completed),
            failed=[f.job for f in failed],
            final=[f.job for f in failed if f.final],
        )

    def _on_stuck(self, job: Job) -> None:
        self._events.emit("job:stuck", worker_id=self._worker_id, job=job)

    async def finish(self, stop_now: asyncio.Event) -> bool:
        """Take no other job, hand back those not started, give running ones the shutdown grace period (or
        until ``stop_now`` is set), then cancel them; ``False`` if the unstarted jobs could not be handed back."""
        self.stopping = True
        handed_back = await self._queue.hand_back_unstarted(stop_now)
        await self._wait_for_running(stop_now)
        await self._cancel()
        self._attempt_log.flush()  # the last attempts are reported before the worker says it stopped
        return handed_back

    async def _wait_for_running(self, stop_now: asyncio.Event) -> None:
        if not self.running:
            return
        logger.info("worker %s waiting up to %ss for %s running job(s)", self._worker_id, self._grace, self.running)
        deadline = time.monotonic() + self._grace
        while self.running and not stop_now.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.slot_freed.clear()
            await until_any(stop_now, self.slot_freed, within=remaining)

    async def _cancel(self) -> None:
        # Their jobs are recorded as interrupted (OutcomeRecorder.error) as the cancellation reaches them.
        runners = list(self.tasks)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    def close(self) -> None:
        """Let go of the threads, abandoning synchronous handlers that still run: the process can exit."""
        if self._threads.busy:
            logger.error(
                "worker %s: %s synchronous handler(s) still running after shutdown; abandoned (their jobs "
                "were recorded as interrupted, and the process can exit without them)",
                self._worker_id,
                self._threads.busy,
            )
        self._threads.shutdown(wait=False, cancel_futures=True)
