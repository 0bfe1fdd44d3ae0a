"""The worker: fetch → run → complete/fail, with a local queue, LISTEN wake-ups and graceful shutdown.

Moving parts, each a named asyncio task:

* the **fetcher** claims jobs in batches (``FOR UPDATE SKIP LOCKED``, one job per named queue per batch)
  into a local priority queue, sized from recent throughput (see ``WorkerOptions.local_queue_size``);
* up to ``concurrency`` **runners** take jobs from the local queue and run their handlers; a runner is
  started when a job arrives and a slot is free, and it keeps taking jobs until the queue is empty;
* the **completer** writes results in batches (see :mod:`backfill.core.run.completer`);
* the **listener** wakes the fetcher on ``jobs:insert`` and stops the worker on a breaking migration;
* the **stale-lock sweeper** applies Graphile's 4-hour rule every 8-10 minutes;
* the **heartbeat** keeps this worker's row in ``backfill_workers`` fresh, and the **sweeper** releases the
  jobs and queue locks of backfill workers whose heartbeat stopped (see :mod:`backfill.core.upkeep.sweeper`);
* the **loop monitor** reports handlers that block the event loop;
* the **cron** scheduler, when the worker was given a crontab.

Jobs run on a fast path (an ``async def`` taking only the payload is awaited directly) unless something
needs the slower, observed path in :mod:`backfill.core.run.execution`: a timeout, an interceptor, a payload
model, a context, or a listener for ``job:*`` events.

The fetcher wakes on a notification, on a slot freeing up while more jobs are known to wait, or every
``poll_interval`` seconds — the safety net for jobs inserted without NOTIFY and for future ``run_at``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import signal
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from backfill.core.errors import ConfigurationError, DatabaseError
from backfill.core.events import Events
from backfill.core.hooks import Hooks
from backfill.core.jobs import SUSPECT_FLAG, Job
from backfill.core.migrations.graphile import BREAKING_REVISIONS, LATEST_REVISION, migrate
from backfill.core.migrations.own import CORE_LINES, migrate_lines
from backfill.core.retry import ConsecutiveFailures, backoff_delays
from backfill.core.run.claims import Claims
from backfill.core.run.completer import Completer, Failure
from backfill.core.run.context import JobContext, job_logger
from backfill.core.run.current import current_job
from backfill.core.run.execution import AttemptRunner, is_batch_result, settle_batch
from backfill.core.run.heartbeat import Heartbeat
from backfill.core.run.listener import Listener, listener_connections
from backfill.core.run.options import MIN_CALLER_POOL_SIZE, RunSummary, WorkerOptions
from backfill.core.run.queries import WorkerQueries
from backfill.core.run.recorder import OutcomeRecorder
from backfill.core.run.signals import StopSignals
from backfill.core.run.threads import DaemonThreadExecutor
from backfill.core.tasks import TaskDefinition, TaskRegistry, default_registry
from backfill.core.upkeep.crontab import CronItem, parse_crontab
from backfill.core.upkeep.maintenance import upkeep_tasks

logger = logging.getLogger("backfill.worker")

# (priority, run_at, id, job): the local queue hands out jobs in the order the database would.
_QueueItem = tuple[int, datetime, int, Job]
_JOBS_BETWEEN_YIELDS = 8
set_current_job = current_job.set
# Events that only the observed path emits: while anyone listens to one, every job takes that path.
_JOB_EVENTS = ("job:start", "job:success", "job:error", "job:failed", "job:complete", "job:skipped", "job:timeout")


class Worker:
    """Runs the tasks of a registry against one Graphile schema. See the module docstring."""

    def __init__(
        self,
        database: str | asyncpg.Pool[Any],
        *,
        tasks: TaskRegistry | Iterable[TaskDefinition] | None = None,
        options: WorkerOptions | None = None,
        events: Events | None = None,
        hooks: Hooks | None = None,
        crontab: str | Sequence[CronItem] | None = None,
    ) -> None:
        self.options = options if options is not None else WorkerOptions()
        self.events = events if events is not None else Events()
        self.hooks = hooks if hooks is not None else Hooks()
        if isinstance(tasks, TaskRegistry):
            self.registry = tasks
        else:
            self.registry = TaskRegistry(tasks) if tasks is not None else default_registry
        if len(self.registry) == 0:
            raise ConfigurationError("the worker has no tasks to run: register some with @backfill.task")
        if not isinstance(database, (str, asyncpg.Pool)):
            raise ConfigurationError("database must be a DSN string or an asyncpg.Pool")
        self._database = database
        # Parsed now, so that a malformed line stops start-up with its line number before anything connects.
        self.cron_items: tuple[CronItem, ...] = tuple(
            parse_crontab(crontab) if isinstance(crontab, str) else (crontab or ())
        )
        if self.cron_items and not self.options.upkeep:
            raise ConfigurationError("a crontab needs a worker with upkeep on: cron is part of the upkeep it runs")
        self._schema = self.options.schema_name
        self._queries = WorkerQueries.for_schema(self._schema, self.options.fetch_filter)
        self._identifiers = self.registry.identifiers
        # Handlers the runner may call directly: async, payload only, no payload model, no timeout.
        self._plain_async_handlers = {
            d.identifier: d.handler
            for d in self.registry
            if d.is_async and not d.wants_context and d.payload_model is None and d.timeout is None
        }
        self._observed_revision = -1
        self._job_events_observed = False
        self.summary = RunSummary()

        # The local queue: a heap of claimed, unstarted jobs. Plain heapq rather than asyncio.Queue, because
        # runners are started on demand and never wait on it (saves a future per job on the hot path).
        self._local: list[_QueueItem] = []
        self._runners: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # something may be fetchable: a notification, a free slot, a poll
        self._slot_freed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._started = asyncio.Event()
        self._stopping = False
        # Jobs whose handlers are running. A count, not a set of job ids: after a released lock, this worker
        # may be running two attempts of the same job at once (the stale one is fenced out when it ends).
        self._running = 0
        self._running_ids: dict[int, int] = {}  # job id -> attempts of it running here (see above)
        self._reconcile_needed = False
        # A suspect job (SUSPECT_FLAG) claimed to run alone; started once nothing else runs here.
        self._isolated: Job | None = None
        self._isolated_started = False
        self._seen_reconnects = 0
        self._seen_write_failures = 0
        self._more_available = False
        self._refill_below = 0
        self._fatal: BaseException | None = None
        self._background: asyncio.Task[RunSummary] | None = None
        self._active = False

        # Throughput estimate (jobs finished per second), for sizing the local queue.
        self._finished = 0
        self._rate = 0.0
        self._rate_mark = (time.monotonic(), 0)

        self._pool: asyncpg.Pool[Any] | None = None
        self._claims: Claims | None = None
        self._completer: Completer | None = None
        self._listener: Listener | None = None
        self._executor: DaemonThreadExecutor | None = None
        self._attempts: AttemptRunner | None = None
        self._recorder: OutcomeRecorder | None = None
        self._heartbeat: Heartbeat | None = None

    @property
    def busy_slots(self) -> int:
        """Handlers running now (at most ``options.concurrency``)."""
        return self._running

    @property
    def worker_id(self) -> str:
        """The id written to ``locked_by`` on every job and queue this worker claims."""
        return self.options.worker_id

    # -- public lifecycle -------------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        """Process jobs until :meth:`stop` is called (or SIGINT/SIGTERM with ``handle_signals``)."""
        return await self._run(once=False)

    async def run_once(self) -> RunSummary:
        """Process every job that is runnable now (and any they enqueue for now), then return."""
        return await self._run(once=True)

    def stop(self) -> None:
        """Ask for a graceful stop; a second call stops running jobs at once (as a second signal does)."""
        if self._stop_requested.is_set():
            self.stop_now()
        else:
            self.stop_gracefully()

    def stop_gracefully(self) -> None:
        """Stop fetching, hand back unstarted jobs and give running ones ``shutdown_grace_period``.

        Unlike :meth:`stop`, calling it again never shortens the grace period.
        """
        if self._stop_requested.is_set():
            return
        self.events.emit("gracefulShutdown", worker_id=self.worker_id, signal=None)
        self._stop_requested.set()
        self._wake.set()

    def stop_now(self) -> None:
        """Stop, cancelling running jobs without waiting for the grace period (recorded as interrupted)."""
        if not self._stop_now.is_set():
            self.events.emit("forcefulShutdown", worker_id=self.worker_id)
        self._stop_requested.set()
        self._stop_now.set()
        self._wake.set()

    async def __aenter__(self) -> Worker:
        self._background = asyncio.create_task(self.run(), name=f"backfill-worker-{self.worker_id}")
        started = asyncio.create_task(self._started.wait())
        try:
            await asyncio.wait({self._background, started}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled while starting (a signal during a runner's start-up, say): a worker left running here
            # would hold its connections for ever, and closing the pool would wait on it.
            started.cancel()
            await self._abort_start()
            raise
        if self._background.done():
            started.cancel()
            self._background.result()  # raises the start-up error
        return self

    async def _abort_start(self) -> None:
        background = self._background
        assert background is not None
        if self._started.is_set():
            # Already claiming: stop as a second signal would, so that claimed jobs are handed back.
            self.stop_now()
        else:
            background.cancel()  # still connecting or migrating: nothing claimed, nothing to hand back
        with contextlib.suppress(BaseException):
            await background

    async def wait(self) -> RunSummary:
        """Inside ``async with worker:``, wait until the worker stops (``stop()``, a signal with
        ``handle_signals``, or an internal failure, which is raised here) and return its summary."""
        if self._background is None:
            raise RuntimeError("wait() is for a worker started with 'async with'; use run() otherwise")
        return await asyncio.shield(self._background)

    async def __aexit__(self, *exc_info: object) -> None:
        # Graceful unless someone already asked for more: leaving the block is not a second stop request
        # (a runner that stopped its lanes first must not cut their grace period short here).
        self.stop_gracefully()
        if self._background is not None:
            await self._background

    # -- orchestration ------------------------------------------------------------------------------------

    async def _run(self, *, once: bool) -> RunSummary:
        if self._active:
            # Its events and counters describe one run; a second run would start already stopped.
            raise RuntimeError("a Worker runs once; create a new Worker to run again")
        self._active = True
        pool, owns_pool = await self._open_pool()
        side_tasks: list[asyncio.Task[Any]] = []
        signal_handlers = StopSignals(self._on_signal)
        try:
            if self.options.handle_signals:
                # Before the rest of start-up: a signal meanwhile makes the worker stop as soon as it started.
                signal_handlers.install()
            await self._prepare(pool)
            self._pool = pool
            self._completer = Completer(
                pool,
                self._queries,
                self.worker_id,
                on_queues_released=self._wake.set,
                on_lost=self._on_lost_lease,
                on_written=self._on_results_written if self.events.listens("results:written") else None,
            )
            self._recorder = OutcomeRecorder(
                self._completer,
                self.summary,
                self.events,
                worker_id=self.worker_id,
                interrupted_retry_delay=self.options.interrupted_retry_delay,
                retry_planner=self.hooks.retry_planner,
            )
            self._executor = DaemonThreadExecutor(self.options.concurrency, thread_name_prefix="backfill-sync-task")
            self._attempts = AttemptRunner(
                self.registry,
                self.hooks,
                self._executor,
                context_for=self._context_for,
                cancel_grace=self.options.cancel_grace_period,
                on_stuck=self._on_stuck,
            )
            side_tasks.append(self._supervised(self._completer.run(), "completer"))
            # Registered before the first claim, so that a crash at any point after it can be rescued.
            self._heartbeat = self._make_heartbeat(pool)
            await self._heartbeat.register()
            side_tasks.append(self._supervised(self._heartbeat.run(), "heartbeat"))
            if not once:
                self._listener = self._make_listener(pool)
                side_tasks.append(self._supervised(self._listener.run(), "listener"))
            upkeep = upkeep_tasks(
                pool,
                self.options,
                self._queries,
                events=self.events,
                worker_id=self.worker_id,
                hooks=self.hooks,
                cron_items=self.cron_items,
                once=once,
            )
            side_tasks.extend(self._supervised(coroutine, name) for name, coroutine in upkeep)
            self._started.set()
            self.events.emit("worker:create", worker_id=self.worker_id, tasks=list(self._identifiers))
            logger.info(
                "worker %s started: %s task(s), concurrency %s, schema %s%s",
                self.worker_id,
                len(self._identifiers),
                self.options.concurrency,
                self._schema,
                _describe_filter(self.options),
            )
            if once:
                await self._drain_runnable()
            else:
                fetcher = self._supervised(self._fetch_loop(), "fetcher")
                await self._stop_requested.wait()
                self._stopping = True
                self._wake.set()
                await fetcher  # lets an in-flight fetch finish: its jobs are then returned, not lost
            if await self._shut_down():
                # Nothing of ours is locked any more. When something is (results could not be written), the
                # row stays, so that a sweeper rescues those jobs once our heartbeat is stale.
                await self._heartbeat.deregister()
        finally:
            signal_handlers.remove()
            leftovers = [*side_tasks, *self._runners]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            if self._heartbeat is not None and not self._started.is_set():
                # Stopped (cancelled, or failed) during start-up, after registering but before any claim:
                # nothing is locked by us, so the row goes now rather than staying until a sweeper calls it dead.
                await self._heartbeat.deregister()
            if self._executor is not None:
                if self._executor.busy:
                    logger.error(
                        "worker %s: %s synchronous handler(s) still running after shutdown; abandoned (their jobs "
                        "were recorded as interrupted, and the process can exit without them)",
                        self.worker_id,
                        self._executor.busy,
                    )
                self._executor.shutdown(wait=False, cancel_futures=True)
            if self._claims is not None:
                await self._claims.close()
            if self._completer is not None:
                await self._completer.close()
            if owns_pool:
                await pool.close()
        self.events.emit("stop", worker_id=self.worker_id)
        self.events.emit("worker:stop", worker_id=self.worker_id, summary=self.summary, error=self._fatal)
        if self._fatal is not None:
            raise DatabaseError(f"worker {self.worker_id} stopped after an internal failure") from self._fatal
        logger.info("worker %s stopped: %s", self.worker_id, self.summary)
        return self.summary

    async def _open_pool(self) -> tuple[asyncpg.Pool[Any], bool]:
        if isinstance(self._database, asyncpg.Pool):
            size = self._database.get_max_size()
            if size < MIN_CALLER_POOL_SIZE:
                raise ConfigurationError(
                    f"the pool passed to the worker has max_size={size}; it needs at least {MIN_CALLER_POOL_SIZE} "
                    "(listener, fetcher and completer each hold a connection, and handlers need one more)"
                )
            return self._database, False
        cache_size = 100 if self.options.prepared_statements else 0
        try:
            pool = await asyncpg.create_pool(
                self._database,
                min_size=min(2, self.options.max_pool_size),
                max_size=self.options.max_pool_size,
                statement_cache_size=cache_size,
            )
        except (OSError, asyncpg.PostgresError) as error:
            raise DatabaseError(f"cannot connect to the database: {error}") from error
        return pool, True

    async def _prepare(self, pool: asyncpg.Pool[Any]) -> None:
        """Bring the schema to revision 20 and backfill's own tables up to date (no-ops when they are), and
        register our task identifiers."""
        try:
            await migrate(pool, self._schema)
            await migrate_lines(pool, self._schema, CORE_LINES)
            async with pool.acquire() as connection:
                await connection.execute(self._queries.ensure_tasks, self._identifiers)
                await self._claims_for(pool).load_task_names(connection)
        except asyncpg.PostgresError as error:
            raise DatabaseError(f"worker start-up failed: {error}") from error

    def _supervised(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        """A side task whose unexpected death stops the worker loudly instead of leaving it idle."""
        task = asyncio.create_task(coroutine, name=f"backfill-{name}")

        def on_done(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or done.exception() is None:
                return
            error = done.exception()
            logger.error("worker %s: %s failed; stopping", self.worker_id, name, exc_info=error)
            self._fatal = error
            self.events.emit("worker:fatalError", worker_id=self.worker_id, error=error, where=name)
            self.stop_gracefully()

        task.add_done_callback(on_done)
        return task

    # -- fetching -------------------------------------------------------------------------------------------

    def _fetch_size(self) -> int:
        """How many jobs to claim now: free slots plus about ``lookahead`` seconds of queued work."""
        now = time.monotonic()
        mark_time, mark_count = self._rate_mark
        if now - mark_time >= 0.05:
            instant = (self._finished - mark_count) / (now - mark_time)
            self._rate = instant if self._rate == 0 else 0.5 * self._rate + 0.5 * instant
            self._rate_mark = (now, self._finished)
        free_slots = self.options.concurrency - self._running
        ahead = min(self.options.local_queue_size, int(self._rate * self.options.lookahead))
        # Refill once a quarter of the lookahead is used: the next batch then arrives while three quarters
        # (~75 ms of work) are still queued, which covers a fetch round trip even under load.
        self._refill_below = ahead - ahead // 4
        return min(self.options.local_queue_size, max(0, free_slots + ahead - len(self._local)))

    def _claims_for(self, pool: asyncpg.Pool[Any]) -> Claims:
        if self._claims is None:
            self._claims = Claims(
                pool,
                self._queries,
                self.worker_id,
                self._identifiers,
                forbidden_flags=self.options.forbidden_flags,
                required_flags=self.options.required_flags,
            )
        return self._claims

    async def _fetch_into_local_queue(self) -> int | None:
        """One fetch round; the number of jobs claimed, or ``None`` when there was no room to fetch."""
        if self._isolated is not None:
            return self._start_isolated_when_idle()
        want = self._fetch_size()
        if want <= 0:
            return None
        assert self._claims is not None
        jobs = await self._claims.claim(want)
        self._more_available = len(jobs) >= want
        if not jobs:
            self.events.emit("worker:getJob:empty", worker_id=self.worker_id)
        suspect = next((job for job in jobs if job.flags and SUSPECT_FLAG in job.flags), None)
        if suspect is not None:
            await self._isolate(suspect, jobs)
            return self._start_isolated_when_idle()
        for job in jobs:  # when stopping, _shut_down returns whatever is left here
            heapq.heappush(self._local, (job.priority, job.run_at, job.id, job))
        self._start_runners()
        return len(jobs)

    async def _isolate(self, suspect: Job, claimed: list[Job]) -> None:
        """Run ``suspect`` alone (see :mod:`backfill.core.upkeep.sweeper`): hand back every other claimed job,
        unstarted, fetch nothing more, and start it once the jobs already running have finished."""
        others = [job for job in claimed if job is not suspect] + [item[3] for item in self._local]
        self._local.clear()
        self._isolated = suspect
        self._isolated_started = False
        logger.warning(
            "worker %s: job %s (%s) was running in two or more workers that died; running it alone, after the %s "
            "job(s) running here finish, so that another death is evidence against it only",
            self.worker_id,
            suspect.id,
            suspect.task_identifier,
            self._running,
        )
        assert self._claims is not None
        try:
            await self._claims.hand_back(others)
        except Exception as error:
            # They stay locked by us without being owned: the reconciliation after this outage releases them.
            self._reconcile_needed = True
            logger.warning("worker %s could not hand back %s job(s): %s", self.worker_id, len(others), error)

    def _start_isolated_when_idle(self) -> int | None:
        if self._isolated is None or self._isolated_started or self._running or self._local:
            return None
        self._isolated_started = True
        job = self._isolated
        heapq.heappush(self._local, (job.priority, job.run_at, job.id, job))
        self._start_runners()
        return 1

    async def _fetch_loop(self) -> None:
        failures = ConsecutiveFailures(initial=0.1, maximum=self.options.poll_interval)
        while not self._stopping:
            self._wake.clear()
            try:
                if self._needs_reconcile():
                    await self._reconcile()
                fetched = await self._fetch_into_local_queue()
            except Exception as error:  # connection trouble above all; whatever it is, retry after a pause
                # The failed statement may have committed (a claim whose reply was lost): look for orphans.
                self._reconcile_needed = True
                self.events.emit("worker:getJob:error", worker_id=self.worker_id, error=error)
                await self._wait_for_wake(failures.failed(logger, f"worker {self.worker_id}: fetching jobs", error))
                continue
            failures.succeeded()
            if fetched and self._more_available and len(self._local) <= self._refill_below:
                continue  # a full batch came back and jobs were used meanwhile: more is waiting
            await self._wait_for_wake(self.options.poll_interval)
            if self._listener is not None:
                self._listener.check_alive()

    def _needs_reconcile(self) -> bool:
        reconnects = self._listener.reconnects if self._listener is not None else 0
        write_failures = self._completer.write_failures if self._completer is not None else 0
        if reconnects != self._seen_reconnects or write_failures != self._seen_write_failures:
            self._seen_reconnects, self._seen_write_failures = reconnects, write_failures
            self._reconcile_needed = True
        return self._reconcile_needed

    async def _reconcile(self) -> None:
        """Release rows locked by us that nothing here owns (claims whose reply was lost in a reconnect).

        Runs in the fetcher, between fetches, so no claim is in flight that the owned set could miss.
        """
        assert self._claims is not None and self._completer is not None
        # Cleared first: a reason to reconcile that arrives while this one runs (a lost lease) needs another.
        # A failure sets it again (the fetch loop's error path).
        self._reconcile_needed = False
        owned = set(self._running_ids) | {item[2] for item in self._local} | self._completer.owned_job_ids()
        released, queues = await self._claims.release_orphans(owned)
        if released or queues:
            logger.warning(
                "worker %s released %s job(s) and %s queue lock(s) it held without owning them (claims whose "
                "reply was lost in a reconnect, or that it dropped unstarted): %s",
                self.worker_id,
                len(released),
                queues,
                released[:20],
            )
            self.events.emit("worker:reconciled", worker_id=self.worker_id, released=released)

    async def _wait_for_wake(self, seconds: float) -> None:
        await _until_any(self._wake, within=seconds)

    async def _drain_runnable(self) -> None:
        """``run_once``: fetch and run until nothing runnable is left and every result is written."""
        assert self._completer is not None and self._claims is not None
        rechecks = backoff_delays(initial=0.005, maximum=0.2)
        while not self._stop_requested.is_set():
            if self._needs_reconcile():
                await self._reconcile()
            fetched = await self._fetch_into_local_queue()
            if not fetched and not self._local and not self._running:
                # Results free named queues and may have enqueued follow-up jobs: write them, look again.
                await self._completer.drained()
                if await self._fetch_into_local_queue():
                    continue
                if not await self._claims.runnable_exists():
                    return
                # Runnable rows that the claim skipped: another fetch held their locks for its statement.
                # Look again shortly rather than report "nothing left" with jobs waiting.
                await _until_any(self._stop_requested, within=next(rechecks))
                continue
            if fetched and self._more_available and len(self._local) <= self._refill_below:
                continue  # keep filling while the database has more and we have room
            # Wait for a slot to finish, then until the local queue is low enough to be worth a refill.
            # No await separates each state check from its clear(), so no wake-up is lost.
            # A stop request ends the wait too: a long job must not delay a stop of run_once.
            self._slot_freed.clear()
            await _until_any(self._slot_freed, self._stop_requested)
            while len(self._local) > self._refill_below and not self._stop_requested.is_set():
                self._slot_freed.clear()
                await _until_any(self._slot_freed, self._stop_requested)

    # -- running ----------------------------------------------------------------------------------------------

    def _start_runners(self) -> None:
        while self._local and len(self._runners) < self.options.concurrency and not self._stopping:
            runner = asyncio.create_task(self._runner())
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)

    async def _runner(self) -> None:
        """Run jobs from the local queue, best first, until it is empty or the worker is stopping."""
        local = self._local
        plain_async = self._plain_async_handlers
        running_ids = self._running_ids
        completer = self._completer
        recorder = self._recorder
        assert completer is not None and recorder is not None  # created before any runner starts
        since_yield = 0
        while local and not self._stopping:
            job = heapq.heappop(local)[3]
            self._running += 1
            running_ids[job.id] = running_ids.get(job.id, 0) + 1
            set_current_job(job)
            try:
                # A per-job timeout (a flag) needs the observed path; other flags (a retry policy, a lane) do not.
                timed = job.flags and job.timeout is not None
                handler = None if timed or self._observed() else plain_async.get(job.task_identifier)
                if handler is None:
                    await self._run_observed(job)
                else:
                    # The common case (an async handler taking the payload alone, nothing observing) without
                    # the observed path's extra coroutines and bookkeeping per job.
                    try:
                        value = await handler(job.payload)
                    except (Exception, asyncio.CancelledError) as error:
                        recorder.error(job, error)
                    else:
                        if is_batch_result(job.payload, value):
                            recorder.outcome(job, await settle_batch(job, value), 0.0)
                        else:
                            self.summary.succeeded += 1
                            completer.complete(job)
            finally:
                set_current_job(None)
                self._running -= 1
                left = running_ids[job.id] - 1
                if left:
                    running_ids[job.id] = left
                else:
                    del running_ids[job.id]
                if self._isolated is not None:
                    if self._isolated is job:
                        self._isolated = None  # the suspect ended without killing us: back to normal
                    self._wake.set()  # either fetch normally again, or start the suspect once idle
                self._finished += 1
                self._slot_freed.set()
                if self._more_available and len(local) <= self._refill_below:
                    self._wake.set()
            since_yield += 1
            if since_yield >= _JOBS_BETWEEN_YIELDS:
                # A handler that never suspends would otherwise keep the loop from the fetcher and the
                # completer for a whole local queue's worth of jobs; every 8 jobs lets the fetcher start
                # its next claim sooner than every 32 did.
                since_yield = 0
                await asyncio.sleep(0)

    def _observed(self) -> bool:
        """Whether jobs must take the observed path: an interceptor or a job:* listener is registered."""
        if self.events.revision != self._observed_revision:
            self._observed_revision = self.events.revision
            self._job_events_observed = any(self.events.listens(name) for name in _JOB_EVENTS)
        return self._job_events_observed or self.hooks.intercepts_runs

    async def _run_observed(self, job: Job) -> None:
        assert self._attempts is not None and self._recorder is not None
        self.events.emit("job:start", worker_id=self.worker_id, job=job)
        started = time.monotonic()
        try:
            outcome = await self._attempts.run(job)
        except asyncio.CancelledError as error:  # the worker is cancelling the job: recorded as interrupted
            self._recorder.error(job, error)
            raise
        self._recorder.outcome(job, outcome, time.monotonic() - started)

    def _context_for(self, job: Job) -> JobContext:
        assert self._pool is not None
        return JobContext(
            job=job,
            worker_id=self.worker_id,
            pool=self._pool,
            schema=self._schema,
            logger=job_logger(logging.getLogger("backfill.task"), job, self.worker_id),
            transform=self.hooks.transform if self.hooks.before_schedule else None,
        )

    # -- shutdown ---------------------------------------------------------------------------------------------

    async def _shut_down(self) -> bool:
        """Return unstarted jobs, let running ones finish or interrupt them, write every result; ``True`` when
        all of it was recorded (nothing is left locked by us)."""
        assert self._completer is not None
        self._stopping = True  # runners finish their current job and take no other
        recorded = await self._return_unstarted()
        if self._running:
            logger.info(
                "worker %s waiting up to %ss for %s running job(s)",
                self.worker_id,
                self.options.shutdown_grace_period,
                self._running,
            )
            await self._wait_for_running_jobs(self.options.shutdown_grace_period)
        runners = list(self._runners)
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        try:
            await asyncio.wait_for(self._completer.drained(), timeout=30.0)
        except TimeoutError:
            recorded = False
            logger.error(
                "worker %s could not record every result before exiting; its rows stay locked until a sweeper "
                "declares it dead (dead_worker_after=%ss)",
                self.worker_id,
                self.options.dead_worker_after,
            )
        self.summary.lost_leases = self._completer.lost_leases
        # A success whose lease was lost did not count: the job is someone else's now.
        self.summary.succeeded -= self._completer.lost_completions
        return recorded

    async def _wait_for_running_jobs(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while self._running and not self._stop_now.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._slot_freed.clear()
            await _until_any(self._stop_now, self._slot_freed, within=remaining)

    async def _return_unstarted(self) -> bool:
        """Give claimed, unstarted jobs back (attempt refunded); ``False`` if that could not be done."""
        jobs = [item[3] for item in self._local]
        if self._isolated is not None and not self._isolated_started:
            jobs.append(self._isolated)
            self._isolated = None
        self._local.clear()
        if not jobs:
            return True
        assert self._claims is not None
        for delay in backoff_delays(initial=0.05, maximum=1.0):
            try:
                returned = await self._claims.hand_back(jobs)
                break
            except Exception as error:  # retried until it works or a second stop request
                if self._stop_now.is_set():
                    logger.error("worker %s could not return %s unstarted job(s): %s", self.worker_id, len(jobs), error)
                    return False
                await asyncio.sleep(delay)
        self.summary.returned += returned
        logger.info("worker %s returned %s unstarted job(s)", self.worker_id, returned)
        return True

    # -- side tasks -----------------------------------------------------------------------------------------

    def _make_heartbeat(self, pool: asyncpg.Pool[Any]) -> Heartbeat:
        return Heartbeat(
            pool,
            self._schema,
            self.worker_id,
            interval=self.options.heartbeat_interval,
            dead_after=self.options.dead_worker_after,
            concurrency=self.options.concurrency,
            tasks=self._identifiers,
            events=self.events,
            on_declared_dead=lambda: self._forfeit_unstarted("it was declared dead and its jobs were released"),
            lane=self.options.lane,
        )

    def _make_listener(self, pool: asyncpg.Pool[Any]) -> Listener:
        connect, release = listener_connections(self._database, pool)
        dsn = self._database if isinstance(self._database, str) else ""
        return Listener(
            connect,
            release,
            on_jobs=self._on_jobs_inserted,
            on_migrate=self._on_migrated,
            on_state=self._on_listen_state,
            dsn_for_logs=dsn,
        )

    def _on_listen_state(self, state: str, error: BaseException | None) -> None:
        if error is None:
            self.events.emit(f"pool:listen:{state}", worker_id=self.worker_id)
        else:
            self.events.emit(f"pool:listen:{state}", worker_id=self.worker_id, error=error)

    def _on_lost_lease(self, action: str, job_ids: list[int]) -> None:
        self._forfeit_unstarted(f"it lost the lease on {len(job_ids)} job(s)")
        self.events.emit("job:lostLease", worker_id=self.worker_id, job_ids=job_ids, action=action)

    def _forfeit_unstarted(self, reason: str) -> None:
        """Drop the claimed jobs that have not started: our claims were released (or one was taken from us),
        so they may be running elsewhere already, and starting them here would run their side effects twice.

        Rows still locked by us that nothing here owns any more (those dropped, or a job claimed afresh while
        its released attempt still ran here) are released by the reconciliation before the next fetch.
        """
        dropped = [item[3] for item in self._local]
        self._local.clear()
        if self._isolated is not None and not self._isolated_started:
            dropped.append(self._isolated)
            self._isolated = None
        self._reconcile_needed = True
        self._wake.set()
        if not dropped:
            return
        self.summary.forfeited += len(dropped)
        logger.warning(
            "worker %s dropped %s claimed job(s) it had not started, because %s: %s",
            self.worker_id,
            len(dropped),
            reason,
            [job.id for job in dropped[:20]],
        )

    def _on_results_written(self, completed: Sequence[Job], failed: Sequence[Failure]) -> None:
        self.events.emit(
            "results:written",
            worker_id=self.worker_id,
            completed=list(completed),
            failed=[f.job for f in failed],
            final=[f.job for f in failed if f.final],
        )

    def _on_stuck(self, job: Job) -> None:
        self.events.emit("job:stuck", worker_id=self.worker_id, job=job)

    def _on_jobs_inserted(self, _count: int) -> None:
        # One fetch serves any number of new jobs (it claims up to the free capacity), so the count only
        # matters for deciding whether to wake at all.
        self._wake.set()

    def _on_migrated(self, payload: dict[str, Any]) -> None:
        revision = payload.get("migrationNumber")
        if payload.get("breaking") and isinstance(revision, int) and revision > LATEST_REVISION:
            logger.error(
                "worker %s: breaking migration %s is newer than this backfill understands (%s); shutting down",
                self.worker_id,
                revision,
                LATEST_REVISION,
            )
            self.stop_gracefully()
        elif payload.get("breaking") and revision not in BREAKING_REVISIONS:
            logger.warning("worker %s: unexpected breaking migration notice %s", self.worker_id, json.dumps(payload))

    def _on_signal(self, signum: int) -> None:
        first = not self._stop_requested.is_set()
        logger.warning(
            "worker %s received %s: %s",
            self.worker_id,
            signal.Signals(signum).name,
            "stopping gracefully (send again to stop now)" if first else "stopping now",
        )
        self.stop()


async def _until_any(*events: asyncio.Event, within: float | None = None) -> None:
    """Until one of ``events`` is set (at once if one is), or ``within`` seconds have passed."""
    if any(event.is_set() for event in events):
        return
    if len(events) == 1:  # the fetch loop's wait between polls: no task to create
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(events[0].wait(), within)
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _describe_filter(options: WorkerOptions) -> str:
    """What slice of the jobs table a worker fetches, for its start-up line (empty when it takes all)."""
    parts = []
    if options.min_priority is not None or options.max_priority is not None:
        low = "" if options.min_priority is None else f"{options.min_priority} <= "
        high = "" if options.max_priority is None else f" <= {options.max_priority}"
        parts.append(f"{low}priority{high}")
    if options.required_flags:
        parts.append(f"flags any of {', '.join(options.required_flags)}")
    if options.forbidden_flags:
        parts.append(f"no flag {', '.join(options.forbidden_flags)}")
    return f" (only jobs with {'; '.join(parts)})" if parts else ""
