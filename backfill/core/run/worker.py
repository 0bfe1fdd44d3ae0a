"""The worker: its lifecycle (start-up, run, graceful then firm shutdown) and the side tasks it supervises.

Moving parts, each a named asyncio task:

* the **fetcher** (:mod:`~backfill.core.run.fetcher`) claims jobs into the **local queue**
  (:mod:`~backfill.core.run.local_queue`), sized from recent throughput;
* up to ``concurrency`` **runners** (:mod:`~backfill.core.run.slots`) take jobs from it and run their handlers;
* the **completer** writes results in batches (see :mod:`backfill.core.run.completer`);
* the **listener** wakes the fetcher on ``jobs:insert`` and stops the worker on a breaking migration;
* the **stale-lock sweeper** applies Graphile's 4-hour rule every 8-10 minutes;
* the **heartbeat** keeps this worker's row in ``backfill_workers`` fresh, and the **sweeper** releases the
  jobs and queue locks of backfill workers whose heartbeat stopped (see :mod:`backfill.core.upkeep.sweeper`);
* the **loop monitor** reports handlers that block the event loop;
* the **cron** scheduler, when the worker was given a crontab.

A side task that dies unexpectedly stops the worker loudly (``worker:fatalError``), never leaving it idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from backfill.core.errors import ConfigurationError, DatabaseError
from backfill.core.events import Events
from backfill.core.hooks import Hooks
from backfill.core.migrations.graphile import BREAKING_REVISIONS, LATEST_REVISION
from backfill.core.run.claims import Claims
from backfill.core.run.completer import Completer
from backfill.core.run.fetcher import Fetcher
from backfill.core.run.heartbeat import Heartbeat
from backfill.core.run.listener import Listener, listener_connections
from backfill.core.run.local_queue import LocalQueue
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.options import RunSummary, WorkerOptions
from backfill.core.run.pause import NO_PAUSE, FetchPause
from backfill.core.run.queries import WorkerQueries
from backfill.core.run.signals import StopSignals
from backfill.core.run.slots import CancelAnswer, Slots, plain_async_handlers
from backfill.core.run.startup import open_pool, prepare
from backfill.core.tasks import TaskDefinition, TaskRegistry, default_registry
from backfill.core.upkeep.crontab import CronItem, parse_crontab
from backfill.core.upkeep.maintenance import upkeep_tasks

logger = logging.getLogger("backfill.worker")


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
        loop_share: LoopShare | None = None,
        leads_loop: bool = False,
    ) -> None:
        """``loop_share``: workers of one process sharing its loop, of which the one with ``leads_loop`` has its
        pickups let through first (see :mod:`backfill.core.run.loop_share`; the runner's Fast lane leads)."""
        self.options = options if options is not None else WorkerOptions()
        # The share this worker marks urgent, or the one whose urgency its runners yield to.
        self._leads: LoopShare | None = loop_share if leads_loop else None
        self._follows: LoopShare | None = None if leads_loop else loop_share
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
        self._queries = WorkerQueries.for_schema(self._schema, self.options.job_slice)
        self._identifiers = self.registry.identifiers
        self._plain_async_handlers = plain_async_handlers(self.registry)
        self.summary = RunSummary()

        self._wake = asyncio.Event()  # something may be fetchable: a notification, a free slot, a poll
        self._stop_requested = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._started = asyncio.Event()
        self._fatal: BaseException | None = None
        self._background: asyncio.Task[RunSummary] | None = None
        self._active = False

        self._pause = NO_PAUSE
        self._queue: LocalQueue | None = None
        self._claims: Claims | None = None
        self._slots: Slots | None = None
        self._completer: Completer | None = None
        self._heartbeat: Heartbeat | None = None

    @property
    def busy_slots(self) -> int:
        """Handlers running now (at most ``options.concurrency``)."""
        return self._slots.running if self._slots is not None else 0

    @property
    def worker_id(self) -> str:
        """The id written to ``locked_by`` on every job and queue this worker claims."""
        return self.options.worker_id

    # -- operator controls --------------------------------------------------------------------------------

    @property
    def fetch_pause(self) -> FetchPause:
        """The work this worker leaves queued now (see :meth:`set_fetch_pause`)."""
        return self._pause

    def set_fetch_pause(self, pause: FetchPause) -> None:
        """Leave the work ``pause`` holds queued from now on: it is not claimed, and claimed jobs it holds that
        have not started are handed back. Running jobs finish. ``FetchPause()`` resumes everything; a worker
        not started yet applies it before its first claim."""
        if pause == self._pause:
            return
        self._pause = pause
        if self._claims is not None:
            self._claims.set_pause(pause)
        if self._queue is not None:
            self._queue.apply_pause(pause)
        self._wake.set()  # a resume has work to fetch now; a pause may have jobs to hand back

    def cancel_job(self, job_id: int, reason: str = "") -> CancelAnswer:
        """Cancel job ``job_id`` if this worker holds it (see :meth:`Slots.cancel`): ``RUNNING`` (its handler is
        being cancelled), ``UNSTARTED`` (claimed, now completed unrun) or ``NOT_HERE``. The job then ends as
        cancelled: its row is deleted like a success's, and ``job:cancelled`` is emitted."""
        if self._slots is None:
            return CancelAnswer.NOT_HERE
        return self._slots.cancel(job_id, reason)

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
        pool, owns_pool = await open_pool(self._database, self.options)
        side_tasks: list[asyncio.Task[Any]] = []
        signal_handlers = StopSignals(self._on_signal)
        try:
            if self.options.handle_signals:
                # Before the rest of start-up: a signal meanwhile makes the worker stop as soon as it started.
                signal_handlers.install()
            claims = self._claims = await prepare(
                pool, self.options, self._queries, self._identifiers, follows=self._follows
            )
            claims.set_pause(self._pause)  # set before the start: the first claim honours it
            queue = self._queue = LocalQueue(
                claims, self.options, summary=self.summary, events=self.events, wake=self._wake
            )
            queue.apply_pause(self._pause)
            slots = self._slots = Slots(
                queue,
                self.options,
                pool=pool,
                queries=self._queries,
                registry=self.registry,
                plain_async=self._plain_async_handlers,
                summary=self.summary,
                events=self.events,
                hooks=self.hooks,
                wake=self._wake,
                follows=self._follows,
            )
            completer = self._completer = slots.completer
            side_tasks.append(self._supervised(completer.run(), "completer"))
            # Registered before the first claim, so that a crash at any point after it can be rescued.
            self._heartbeat = self._make_heartbeat(pool, queue)
            await self._heartbeat.register()
            side_tasks.append(self._supervised(self._heartbeat.run(), "heartbeat"))
            listener = None if once else self._make_listener(pool)
            if listener is not None:
                side_tasks.append(self._supervised(listener.run(), "listener"))
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
            fetcher = Fetcher(
                queue, slots, completer, listener, self.options, events=self.events, wake=self._wake, leads=self._leads
            )
            if once:
                await fetcher.drain(self._stop_requested)
            else:
                fetching = self._supervised(fetcher.loop(), "fetcher")
                await self._stop_requested.wait()
                slots.stopping = True
                self._wake.set()
                await fetching  # lets an in-flight fetch finish: its jobs are then returned, not lost
            if await self._shut_down(slots, completer):
                # Nothing of ours is locked any more. When something is (results could not be written), the
                # row stays, so that a sweeper rescues those jobs once our heartbeat is stale.
                await self._heartbeat.deregister()
        finally:
            signal_handlers.remove()
            leftovers = [*side_tasks, *(self._slots.tasks if self._slots is not None else ())]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            if self._heartbeat is not None and not self._started.is_set():
                # Stopped (cancelled, or failed) during start-up, after registering but before any claim:
                # nothing is locked by us, so the row goes now rather than staying until a sweeper calls it dead.
                await self._heartbeat.deregister()
            if self._slots is not None:
                self._slots.close()
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

    # -- shutdown ---------------------------------------------------------------------------------------------

    async def _shut_down(self, slots: Slots, completer: Completer) -> bool:
        """Return unstarted jobs, let running ones finish or interrupt them, write every result; ``True`` when
        all of it was recorded (nothing is left locked by us)."""
        recorded = await slots.finish(self._stop_now)
        try:
            await asyncio.wait_for(completer.drained(), timeout=30.0)
        except TimeoutError:
            recorded = False
            logger.error(
                "worker %s could not record every result before exiting; its rows stay locked until a sweeper "
                "declares it dead (dead_worker_after=%ss)",
                self.worker_id,
                self.options.dead_worker_after,
            )
        self.summary.lost_leases = completer.lost_leases
        # A success whose lease was lost did not count: the job is someone else's now.
        self.summary.succeeded -= completer.lost_completions
        return recorded

    # -- side tasks -----------------------------------------------------------------------------------------

    def _make_heartbeat(self, pool: asyncpg.Pool[Any], queue: LocalQueue) -> Heartbeat:
        return Heartbeat(
            pool,
            self._schema,
            self.worker_id,
            interval=self.options.heartbeat_interval,
            dead_after=self.options.dead_worker_after,
            concurrency=self.options.concurrency,
            tasks=self._identifiers,
            events=self.events,
            on_declared_dead=lambda: queue.forfeit_unstarted("it was declared dead and its jobs were released"),
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

    def _on_jobs_inserted(self, _count: int) -> None:
        # One fetch serves any number of new jobs (it claims up to the free capacity), so the count only
        # matters for deciding whether to wake at all.
        if self._leads is not None:
            self._leads.hurry()  # from now, not from the fetcher's next turn: that turn may be a long one
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
