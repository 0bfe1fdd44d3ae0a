"""Events: what a worker tells observers (metrics, logs, tests) about jobs, connections, cron and sweeps.

Names follow Graphile Worker's (``job:start``, ``job:success``, ``job:error``, ``job:failed``,
``job:complete``, ``pool:listen:success``, ``cron:schedule`` …) so that people who know one know the other;
the ones Graphile does not have are marked "backfill" in :data:`EVENT_NAMES`.

Listeners are observers: they cannot change what happens (interceptors in :mod:`backfill.core.hooks` can).
A listener is called synchronously, in the order it was added, with one :class:`Event`. It may be an
``async def``; its coroutine is then scheduled on the loop and not awaited. A listener that raises (or whose
coroutine raises) is logged and otherwise ignored: an observer must never stop the worker.

Emitting costs one dictionary lookup when nobody listens, so the hot path pays nothing for unused events.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from backfill.core.errors import ConfigurationError

logger = logging.getLogger("backfill.events")

# Every event a backfill worker emits, with what its data holds. "*" listens to all of them.
EVENT_NAMES: Mapping[str, str] = {
    "worker:create": "worker_id, tasks: the worker is starting",
    "worker:stop": "worker_id, summary, error: the worker has stopped",
    "worker:fatalError": "worker_id, error, where: a side task died; the worker stops",
    "worker:getJob:error": "worker_id, error: a fetch failed (it is retried)",
    "worker:getJob:empty": "worker_id: a fetch found nothing to run",
    "worker:reconciled": "worker_id, released: backfill — rows locked by us that no task owned were released",
    "job:start": "worker_id, job: a handler is about to run",
    "job:success": "worker_id, job, duration: the handler returned",
    "job:error": "worker_id, job, error, duration: the attempt failed (it may be retried)",
    "job:failed": "worker_id, job, error: the attempt failed and no attempt is left",
    "job:complete": "worker_id, job, error: the attempt ended, either way (error is None on success)",
    "job:skipped": "worker_id, job, reason: backfill — an interceptor completed the job without running it",
    "job:timeout": "worker_id, job, timeout: backfill — the handler ran past its deadline and was cancelled",
    "job:stuck": "worker_id, job: backfill — a handler ignored cancellation; its slot was given up",
    "job:cancelled": "worker_id, job, reason, started: backfill — an operator cancelled the job, running (started) "
    "or claimed and not started; it is completed, never retried",
    "attempts:batch": "worker_id, started, succeeded, failed, skipped: backfill — the attempts that started and "
    "ended since the last batch, at most one batch per loop turn; listening keeps the worker's fast path "
    "(see backfill.core.run.attempt_log)",
    "results:written": "worker_id, completed, failed, final: backfill — results committed: completed jobs, failed "
    "jobs, and those of the failed that have no attempt left (lists of Job)",
    "job:lostLease": "worker_id, job_ids, action: backfill — results discarded because the lock was no longer ours",
    "pool:listen:connecting": "worker_id: the LISTEN connection is being opened",
    "pool:listen:success": "worker_id: LISTEN is active",
    "pool:listen:error": "worker_id, error: the LISTEN connection failed or was lost",
    "gracefulShutdown": "worker_id, signal: a stop was requested; running jobs may finish",
    "forcefulShutdown": "worker_id: running jobs are being cancelled",
    "stop": "worker_id: the worker has released everything and is about to return",
    "cron:starting": "worker_id, items: the cron scheduler is starting",
    "cron:started": "worker_id, items: the cron scheduler is running",
    "cron:backfill": "worker_id, item, timestamp: a missed run is being scheduled late (fill)",
    "cron:prematureTimer": "worker_id, expected, actual: the timer fired early (clock change)",
    "cron:overdueTimer": "worker_id, expected, actual: the timer fired late (a stalled loop or a clock change)",
    "cron:schedule": "worker_id, timestamp, items: cron jobs are about to be scheduled",
    "cron:scheduled": "worker_id, timestamp, items, jobs: cron jobs were scheduled",
    "heartbeat:declaredDead": "worker_id: backfill — a sweeper declared this worker dead; it registered again",
    "sweep:recovered": "worker_id, dead_workers, released_jobs, poisoned_jobs, released_queues: backfill",
    "loop:blocked": "worker_id, seconds, stack, culprit (handler/backfill/unknown): backfill — the loop was blocked",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One emitted event: its ``name`` and its ``data`` (also readable as ``event["job"]``)."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


EventListener = Callable[[Event], object]


class Events:
    """A small synchronous event emitter. One per worker, or shared between several."""

    def __init__(self) -> None:
        self._listeners: dict[str, list[EventListener]] = {}
        self._all: list[EventListener] = []
        self._pending: set[asyncio.Task[Any]] = set()  # async listeners' tasks, kept alive until done
        # Bumped on every on()/off(), so a hot path can cache "does anyone listen to X" between changes.
        self.revision = 0

    def on(self, name: str, listener: EventListener) -> Callable[[], None]:
        """Call ``listener`` for every ``name`` event (``"*"``: every event); returns an unsubscribe function."""
        if name != "*" and name not in EVENT_NAMES:
            raise ConfigurationError(f"unknown event name {name!r}; known events: {', '.join(sorted(EVENT_NAMES))}")
        if not callable(listener):
            raise ConfigurationError(f"the listener for {name!r} is not callable")
        target = self._all if name == "*" else self._listeners.setdefault(name, [])
        target.append(listener)
        self.revision += 1
        return lambda: self.off(name, listener)

    def off(self, name: str, listener: EventListener) -> None:
        target = self._all if name == "*" else self._listeners.get(name, [])
        if listener in target:
            target.remove(listener)
            self.revision += 1

    def listens(self, name: str) -> bool:
        """Whether emitting ``name`` would reach anyone (lets callers skip building costly data)."""
        return bool(self._all) or bool(self._listeners.get(name))

    def emit(self, name: str, /, **data: Any) -> None:
        listeners = self._listeners.get(name)
        if not listeners and not self._all:
            return
        event = Event(name, data)
        # A copy: a listener may remove itself (or others) while we iterate.
        for listener in (*(listeners or ()), *self._all):
            try:
                result = listener(event)
            except Exception:
                logger.exception("listener %r for event %s raised; ignored", listener, name)
                continue
            # A plain listener returns None: skip the awaitable check, which is most of emit's own cost.
            if result is not None and inspect.isawaitable(result):
                self._schedule(listener, name, result)

    def _schedule(self, listener: EventListener, name: str, awaitable: Any) -> None:
        async def observe() -> None:
            try:
                await awaitable
            except Exception:
                logger.exception("async listener %r for event %s raised; ignored", listener, name)

        try:
            task = asyncio.get_running_loop().create_task(observe())
        except RuntimeError:  # emitted from a thread without a loop: nothing can run the coroutine
            close = getattr(awaitable, "close", None)
            if callable(close):
                close()  # avoids a "coroutine was never awaited" warning
            logger.error("async listener %r for event %s emitted outside an event loop; skipped", listener, name)
            return
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
