"""WorkerRunner: everything a worker process runs, configured from the environment.

One core :class:`~backfill.core.run.worker.Worker` per lane — Fast (priority < 0), Bulk (priority ≥ 0) and each
custom lane — sharing one connection pool, so each lane has its own slots and a fast job never waits behind
long bulk jobs. Around them: the retry policies (the core's retry planner), the dead-letter mover, metrics
(and their ``/metrics`` server), structured logs. Only the first lane runs the shared upkeep (stale locks,
dead-worker sweeper, cron); every lane has its own heartbeat, so crash recovery works lane by lane.

Three ways to run it:

* ``WorkerRunner.from_env().run()`` — the main process of a container: blocks, handles SIGTERM/SIGINT
  (first: graceful stop within ``BACKFILL_SHUTDOWN_GRACE_SECONDS``; second: stop now) and returns the exit
  code (see :func:`main` for one that also maps configuration errors);
* ``async with runner:`` (or ``await runner.start()`` … ``await runner.stop()``) — in the background of an
  application, e.g. a FastAPI lifespan; leaving the block stops and drains the lanes;
* ``await runner.run_once()`` — process what is runnable now, move what failed for good to the dead-letter
  queue, and return a summary (cron jobs, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
from prometheus_client import CollectorRegistry

from backfill.client.async_client import with_layer_defaults
from backfill.control import ControlWatcher
from backfill.control.throughput import ThroughputRecorder
from backfill.core import (
    BackfillError,
    ConfigurationError,
    CronItem,
    Events,
    Hooks,
    IncompatibleSchemaError,
    LoopShare,
    RunSummary,
    TaskRegistry,
    Worker,
    default_registry,
    load_crontab_file,
    parse_crontab,
)
from backfill.core.extension import StopSignals, record_stop_signals
from backfill.dlq import DeadLetterMover, MovedJob
from backfill.exit_codes import EXIT_FAILURE, EXIT_INCOMPATIBLE_SCHEMA, EXIT_OK, EXIT_USAGE
from backfill.lanes.catalog import declare_lanes
from backfill.lanes.lane import FAST_LANE, Lane
from backfill.logs import configure_logging
from backfill.metrics import BackfillMetrics, MetricsServer, QueueStatsCollector, serve_metrics
from backfill.metrics.health import LoopLiveness, Readiness
from backfill.migrations import migrate_all
from backfill.runner.lane_options import lane_options, with_default_timeout
from backfill.runner.pool import connect, pool_size
from backfill.runner.success_log import log_successes
from backfill.settings import BackfillSettings
from backfill.tasks.catalog import publish_task_defaults
from backfill.tasks.defaults import defaults_for, task_policy
from backfill.tasks.modules import load_tasks
from backfill.tasks.retry_policies import ErrorRules, RetryPlanner, resolve_policy

if TYPE_CHECKING:
    from backfill.admin.server import AdminServer

logger = logging.getLogger("backfill.runner")


class WorkerRunner:
    """Runs the lanes of one process. See the module docstring."""

    def __init__(
        self,
        settings: BackfillSettings,
        *,
        tasks: TaskRegistry | None = None,
        error_rules: ErrorRules | None = None,
        hooks: Hooks | None = None,
        metrics_registry: CollectorRegistry | None = None,
        crontab: str | Sequence[CronItem] | None = None,
        on_worker_events: Callable[[Events, str], object] | None = None,
    ) -> None:
        self.settings = settings
        # Told each lane worker's events (and the lane's name) as the runner makes the worker, before it runs: a
        # listener of job:* events attaches here (backfill.testing's run report does; observe_workers adds more).
        self._worker_observers: list[Callable[[Events, str], object]] = (
            [on_worker_events] if on_worker_events is not None else []
        )
        self.registry = with_default_timeout(tasks if tasks is not None else default_registry, settings)
        if len(self.registry) == 0:
            raise ConfigurationError(
                "no tasks to run: register some with @backfill.task, or list their modules in BACKFILL_TASK_MODULES"
            )
        self.lanes: tuple[Lane, ...] = settings.all_lanes
        self._hooks = hooks if hooks is not None else Hooks()
        default_policy = resolve_policy(settings.default_retry_policy, field_name="BACKFILL_DEFAULT_RETRY_POLICY")
        if self._hooks.retry_planner is None:  # a planner of the caller's own stays in charge
            self._hooks.retry_planner = RetryPlanner(
                task_policies=task_policy, rules=error_rules, default_policy=default_policy
            )
        # Jobs enqueued through the workers (ctx.add_job in handlers, cron) get the task's defaults and a retry
        # policy, as jobs from the client do; first, so the caller's own interceptors see the result.
        self._hooks.before_schedule.insert(
            0, lambda spec: with_layer_defaults(spec, defaults_for(spec.identifier), default_policy)
        )
        if crontab is None and settings.crontab is not None:
            crontab = load_crontab_file(Path(settings.crontab))
        # Parsed now, so a malformed line stops start-up with its line number before anything connects.
        self._crontab: tuple[CronItem, ...] = tuple(
            parse_crontab(crontab) if isinstance(crontab, str) else crontab or ()
        )
        self._check_pool_size()
        self._warn_about_unserved_lanes()
        self.metrics = BackfillMetrics(
            metrics_registry, tasks=self.registry.identifiers, lanes=[lane.name for lane in self.lanes]
        )
        self._readiness = Readiness(lane.name for lane in self.lanes)  # /readyz; see the `ready` property
        self.workers: dict[str, Worker] = {}
        # Pauses and cancellations from the database, applied to the lanes (backfill.control).
        self.control = ControlWatcher(
            settings.database_url or "",
            settings.schema_name,
            lambda: self.workers,
            poll_interval=settings.control_poll_seconds,
            on_pauses=lambda pauses: self.metrics.pauses_in_force((p.kind.value, p.name) for p in pauses),
        )
        self._pool: asyncpg.Pool[Any] | None = None
        self._mover: DeadLetterMover | None = None
        self._throughput: ThroughputRecorder | None = None
        self._metrics_server: MetricsServer | None = None
        self.admin_server: AdminServer | None = None  # the admin API, while it is served (BACKFILL_ADMIN_PORT)
        self._side_tasks: list[asyncio.Task[Any]] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop_requested = asyncio.Event()
        self._earlier_rounds = RunSummary()  # run_once: the counts of the rounds before the current one

    @classmethod
    def from_env(
        cls, *, env_file: str | Path | None = ".env", extra_task_modules: Sequence[str] = (), **options: Any
    ) -> WorkerRunner:
        """Settings from the environment (and ``.env``), logging configured, the modules of
        ``BACKFILL_TASK_MODULES`` (and ``extra_task_modules``) imported for their tasks; ``options`` as for
        the constructor."""
        with warnings.catch_warnings(record=True) as early:  # raised before logging is configured: held back
            warnings.simplefilter("always")
            settings = BackfillSettings.load(env_file)
        configure_logging(
            level=settings.log_level, fmt=settings.log_format, log_payloads=settings.log_payloads, root=True
        )
        for warning in early:  # now through the configured handler (JSON in JSON mode)
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        modules = (*settings.task_modules, *extra_task_modules)
        if modules and "tasks" not in options:
            source = "BACKFILL_TASK_MODULES" if settings.task_modules else "--tasks"
            options["tasks"] = load_tasks(modules, source=source)
        return cls(settings, **options)

    # -- foreground ---------------------------------------------------------------------------------------------

    def run(self) -> int:
        """Block until stopped by SIGTERM/SIGINT (or a fatal error); the process exit code. Runs in this
        process alone, whatever ``BACKFILL_PROCESSES`` says: :func:`main` and ``backfill run`` honour it."""
        if self.settings.processes > 1:
            logger.warning(
                "BACKFILL_PROCESSES=%d is honoured by `backfill run` and backfill.runner.main(); "
                "WorkerRunner.run() runs one process",
                self.settings.processes,
            )
        record_stop_signals()  # a signal before the loop's handlers are in place is delivered, not fatal
        try:
            asyncio.run(self.serve(handle_signals=True))
        except ConfigurationError as error:
            logger.error("configuration error: %s", error)
            return EXIT_USAGE
        except IncompatibleSchemaError as error:
            logger.error("%s", error)
            return EXIT_INCOMPATIBLE_SCHEMA
        except BackfillError as error:
            logger.error("worker runner stopped: %s", error, exc_info=error.__cause__)
            return EXIT_FAILURE
        return EXIT_OK

    async def serve(self, *, handle_signals: bool = False) -> RunSummary:
        """Run until :meth:`request_stop` (or a signal, with ``handle_signals``), then stop and drain.

        A stop requested while the runner is still starting (connecting, migrating, starting its lanes)
        abandons the start-up and returns once what had started has stopped.
        """
        signals = StopSignals(self._on_signal)
        if handle_signals:
            signals.install()  # before start(): a signal at any moment of start-up must stop it cleanly
        try:
            if await self._unless_stop_requested(self.start()):
                waits = [asyncio.ensure_future(worker.wait()) for worker in self.workers.values()]
                stop = asyncio.ensure_future(self._stop_requested.wait())
                await asyncio.wait([*waits, stop], return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                for wait in waits:
                    wait.cancel()
        finally:
            summary = await self.stop()
            signals.remove()
        return summary

    def observe_workers(self, observer: Callable[[Events, str], object]) -> Callable[[], None]:
        """Call ``observer(events, lane)`` as ``on_worker_events`` is called: for each lane worker made from now on
        (every start, every ``run_once`` round), and at once for the workers running now. Returns a function that
        stops the calls; removing the listeners the observer added is the observer's business."""
        self._worker_observers.append(observer)
        for lane, worker in self.workers.items():
            observer(worker.events, lane)

        def stop() -> None:
            if observer in self._worker_observers:
                self._worker_observers.remove(observer)

        return stop

    def request_stop(self) -> None:
        """Ask every lane to stop gracefully; a second request cancels running jobs."""
        again = self._stop_requested.is_set()
        self._stop_requested.set()
        for worker in self.workers.values():
            if again:
                worker.stop_now()
            else:
                worker.stop_gracefully()

    def _on_signal(self, signum: int) -> None:
        logger.warning(
            "received %s: %s",
            signal.Signals(signum).name,
            "stopping now" if self._stop_requested.is_set() else "stopping gracefully (send again to stop now)",
        )
        self.request_stop()

    async def _unless_stop_requested(self, work: Coroutine[Any, Any, Any]) -> bool:
        """Run ``work``, cancelling it if a stop is requested first; whether it ran to its end."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                task.cancel()
                # The work cleans up after itself when cancelled (start() stops what it started).
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            return False
        task.result()  # raises what the work raised
        return True

    # -- background ---------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, migrate and start every lane; returns once they all run."""
        if self._stack is not None:
            raise RuntimeError("this WorkerRunner is already running")
        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            pool = await self._open()
            stack.push_async_callback(self._close_pool)
            stack.push_async_callback(self._stop_side_tasks)
            # Runs after the workers drained (callbacks run in reverse): failures recorded in their last
            # moments go to the dead-letter queue now rather than at the next start.
            stack.push_async_callback(self._final_move)
            self._start_side_tasks(pool)
            await self._start_admin()
            workers = self._make_workers(pool)
            await self.control.load(pool)  # before the lanes start: their first claim honours the pauses
            self._side_tasks.append(asyncio.create_task(self.control.run(), name="backfill-control"))
            for worker in workers:
                await stack.enter_async_context(worker)
        except BaseException:
            self._stack = None
            await stack.aclose()
            raise
        logger.info(
            "backfill runner started: lanes %s, schema %s",
            ", ".join(f"{lane.name}={lane.concurrency}" for lane in self.lanes),
            self.settings.schema_name,
        )

    async def stop(self) -> RunSummary:
        """Stop every lane (running jobs get the shutdown grace period), then everything else."""
        stack, self._stack = self._stack, None
        if stack is None:
            return self.summary
        for worker in self.workers.values():
            worker.stop_gracefully()  # all lanes drain at once, each within the grace period
        await stack.aclose()  # leaves each worker's `async with` in reverse order: waits for its drain
        return self.summary

    async def __aenter__(self) -> WorkerRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- once -----------------------------------------------------------------------------------------------------

    async def run_once(self, *, handle_signals: bool = False) -> RunSummary:
        """Run every lane until nothing is runnable now, move dead jobs to the DLQ, and return the summary.

        Lanes run in rounds: a job that one lane finished may unlock a named queue whose next job belongs to
        another lane that had already found nothing to do, so another round follows any round that ran a job.
        A stop request (or a signal, with ``handle_signals``) ends it as it ends :meth:`serve`.
        """
        signals = StopSignals(self._on_signal)
        if handle_signals:
            signals.install()
        try:
            await self._unless_stop_requested(self._run_rounds())
        finally:
            signals.remove()
        return self.summary

    async def _run_rounds(self) -> None:
        pool = await self._open()
        try:
            while not self._stop_requested.is_set():
                workers = self._make_workers(pool, once=True)
                await self.control.load(pool)  # paused work is left queued; run_once does not wait for it
                await asyncio.gather(*(worker.run_once() for worker in workers))
                if not any(worker.summary.processed for worker in workers):
                    break
                self._earlier_rounds = self.summary
                self.workers = {}
        finally:
            try:
                await self._final_move()
            finally:
                await self._close_pool()

    # -- shared -----------------------------------------------------------------------------------------------------

    @property
    def summary(self) -> RunSummary:
        """The lanes' summaries added up."""
        total = dataclasses.replace(self._earlier_rounds)
        for worker in self.workers.values():
            for counter in dataclasses.fields(RunSummary):
                setattr(total, counter.name, getattr(total, counter.name) + getattr(worker.summary, counter.name))
        return total

    @property
    def ready(self) -> bool:
        """Started, every lane's worker running, and the database answered within the last few seconds: what
        ``/readyz`` answers 200 to (see :mod:`backfill.metrics.health`)."""
        return self._stack is not None and self._readiness()[0]

    @property
    def crontab(self) -> tuple[CronItem, ...]:
        """The cron items this runner schedules (its first lane runs them)."""
        return self._crontab

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The pool the lanes share (handlers may use it too); only while running."""
        if self._pool is None:
            raise RuntimeError("the runner is not running")
        return self._pool

    def _warn_about_unserved_lanes(self) -> None:
        # Not an error: another runner may serve the lane. But if none does, those jobs wait forever.
        served = {lane.name for lane in self.lanes}
        for identifier in self.registry.identifiers:
            defaults = defaults_for(identifier)
            if defaults is not None and defaults.lane is not None and defaults.lane not in served:
                logger.warning(
                    "task %s runs in lane %r, which this runner does not run (BACKFILL_LANES=%s): its jobs wait "
                    "for a runner that does",
                    identifier,
                    defaults.lane,
                    ",".join(f"{lane.name}={lane.concurrency}" for lane in self.lanes if lane.is_custom) or "",
                )

    def _check_pool_size(self) -> None:
        pool_size(self.lanes, self.settings.max_pool_size)

    async def _open(self) -> asyncpg.Pool[Any]:
        settings = self.settings
        if not settings.database_url:
            raise ConfigurationError("DATABASE_URL: not set; it must name the PostgreSQL database to work on")
        size = pool_size(self.lanes, settings.max_pool_size)
        pool = await connect(
            settings.database_url, size, settings.prepared_statements, settings.connect_timeout_seconds
        )
        try:
            await migrate_all(pool, settings.schema_name, dlq=settings.dlq_enabled)
            # So that services enqueueing these tasks without importing them still apply their defaults.
            await publish_task_defaults(
                pool,
                settings.schema_name,
                self.registry.identifiers,
                keep_results={d.identifier: d.keep_result for d in self.registry if d.keep_result is not None},
            )
            await declare_lanes(pool, settings.schema_name, self.lanes)  # so clients can tell a lane's typo
        except BaseException:
            await pool.close()
            raise
        self._pool = pool
        self._throughput = ThroughputRecorder(pool, settings.schema_name)
        if settings.dlq_enabled:
            self._mover = DeadLetterMover(
                pool, settings.schema_name, interval=settings.dlq_sweep_interval_seconds, on_moved=self._dead_lettered
            )
        return pool

    def _make_workers(self, pool: asyncpg.Pool[Any], *, once: bool = False) -> list[Worker]:
        settings = self.settings
        self.workers = {}
        # The lanes share this process's event loop: the Fast lane's pickups go first (see core's loop_share).
        loop_share = LoopShare() if len(self.lanes) > 1 else None
        for position, lane in enumerate(self.lanes):
            upkeep = position == 0
            options = lane_options(settings, lane, upkeep=upkeep)
            events = Events()
            worker = Worker(
                pool,
                tasks=self.registry,
                options=options,
                events=events,
                hooks=self._hooks,
                crontab=self._crontab if upkeep and not once else None,
                loop_share=loop_share,
                leads_loop=lane.name == FAST_LANE,
            )
            self.metrics.observe_worker(events, lane.name, busy_slots=_busy_slots_of(worker), slots=lane.concurrency)
            log_successes(events, level=settings.success_log, sample_rate=settings.success_log_sample_rate)
            self._readiness.observe(events, lane.name)
            self.control.observe(events)
            if self._throughput is not None:
                self._throughput.observe(events, lane.name)
            if self._mover is not None:
                self._mover.attach(events)
            for observer in tuple(self._worker_observers):
                observer(events, lane.name)
            self.workers[lane.name] = worker
        return list(self.workers.values())

    def _start_side_tasks(self, pool: asyncpg.Pool[Any]) -> None:
        settings = self.settings
        if self._mover is not None:
            self._side_tasks.append(asyncio.create_task(self._mover.run(), name="backfill-dlq-mover"))
        stats = QueueStatsCollector(
            pool,
            settings.schema_name,
            self.metrics,
            interval=settings.queue_stats_interval_seconds,
            lanes=[lane.name for lane in self.lanes],
        )
        self._side_tasks.append(asyncio.create_task(stats.run(), name="backfill-queue-stats"))
        self._side_tasks.append(asyncio.create_task(self._readiness.probe_database(pool), name="backfill-db-probe"))
        if self._throughput is not None:
            self._side_tasks.append(asyncio.create_task(self._throughput.run(), name="backfill-throughput"))
        if settings.metrics_port is not None:
            self._metrics_server = serve_metrics(
                self.metrics.registry,
                host=settings.metrics_host,
                port=settings.metrics_port,
                liveness=LoopLiveness(asyncio.get_running_loop()),
                readiness=self._readiness,
            )
            logger.info("metrics served on http://%s:%s/metrics", settings.metrics_host, self._metrics_server.port)

    async def _start_admin(self) -> None:
        """The admin API on BACKFILL_ADMIN_PORT, if set (the settings refused a host off loopback without a token)."""
        settings = self.settings
        if settings.admin_port is None:
            return
        from backfill.admin import AdminApi  # the optional extra: imported only when asked for
        from backfill.admin.server import AdminServer

        token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        api = AdminApi(
            settings.database_url or "",
            schema=settings.schema_name,
            token=token,
            read_only=settings.admin_read_only,
            runner=self,
        )
        server = AdminServer(api, host=settings.admin_host, port=settings.admin_port)
        await server.start()
        self.admin_server = server

    async def _stop_side_tasks(self) -> None:
        tasks, self._side_tasks = self._side_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        admin, self.admin_server = self.admin_server, None
        if admin is not None:
            await admin.stop()

    async def _close_pool(self) -> None:
        throughput, self._throughput = self._throughput, None
        if throughput is not None:
            try:
                await throughput.flush()  # the last seconds' counts
            except Exception as error:
                logger.warning("recording the last throughput counts failed: %s", error)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _final_move(self) -> None:
        if self._mover is not None:
            await self._move_once_quietly()
            await self._mover.close()

    async def _move_once_quietly(self) -> None:
        assert self._mover is not None
        try:
            await self._mover.move_now()
        except Exception as error:  # the next runner's mover will take them; never fail a shutdown over it
            logger.warning("moving failed jobs to the dead-letter queue failed: %s", error)

    def _dead_lettered(self, moved: Sequence[MovedJob]) -> None:
        for job in moved:
            self.metrics.dead_lettered(job.task_identifier, job.priority, job.flags)


def _busy_slots_of(worker: Worker) -> Callable[[], int]:
    return lambda: worker.busy_slots


def main() -> int:
    """``WorkerRunner.from_env().run()`` with configuration errors reported as exit code 2."""
    record_stop_signals()  # from_env imports the task modules: a signal meanwhile stops the runner at once
    try:
        runner = WorkerRunner.from_env()
    except ConfigurationError as error:
        print(f"backfill: configuration error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    if runner.settings.processes > 1:  # BACKFILL_PROCESSES: worker processes under a supervisor
        from backfill.runner.supervisor import run_supervisor

        return run_supervisor(runner.settings)
    return runner.run()
