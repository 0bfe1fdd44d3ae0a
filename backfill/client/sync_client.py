"""The blocking API for synchronous services (Django, Flask, scripts).

``SyncBackfillClient`` has the methods of :class:`~backfill.client.async_client.BackfillClient`, blocking. Two ways to
reach the database:

* on its own: an asyncio loop on a private daemon thread runs an async client with its own small pool, and
  every call waits for its result (thread-safe; any number of threads may share one client);
* inside *your* transaction: pass ``connection=`` a DB-API connection (psycopg 3, psycopg2 — Django's
  ``django.db.connection`` and SQLAlchemy's ``engine.raw_connection()`` are such), and the job is written with
  Graphile's ``add_job`` on that connection, so it exists only if your transaction commits.

Module-level ``enqueue``/``enqueue_fast``/``enqueue_bulk``/``enqueue_critical`` here use one default
synchronous client built from the environment.

Every blocking call waits at most ``call_timeout`` seconds (30 by default, per client or per call), then cancels
its work on the loop and raises :class:`~backfill.core.errors.CallTimeoutError`; ``close()`` is bounded too.

A client survives ``fork()`` (gunicorn ``--preload``, multiprocessing's ``fork`` start method): the child's copy
notices the new process id and starts its own loop thread and pool on first use, leaving the parent's
untouched (see :func:`backfill.core.db.abandon_after_fork` for why they are neither used nor closed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.control import Cancellation, CancelResult, Pause
from backfill.core import DatabaseError, Job, JobKeyMode, JobSpec
from backfill.core.extension import CallTimeoutError, abandon_after_fork, check_number, enqueue_statement
from backfill.lanes.lane import BUILT_IN_LANES, lane_of
from backfill.priorities import Priority
from backfill.results.models import JobOutcome
from backfill.results.waiter import DEFAULT_POLL_INTERVAL

T = TypeVar("T")

logger = logging.getLogger(__name__)

# Long enough for a connection and one statement on a loaded machine and behind a PgBouncer queue, short enough
# that a request handler gets an error instead of a worker that looks hung to its load balancer.
DEFAULT_CALL_TIMEOUT = 30.0
# How long close() lets cancelled calls and asyncpg's cancel requests settle (one round trip each), and how long
# the loop thread then may take to leave run_forever; close() returns within call_timeout plus these.
_CANCEL_GRACE_SECONDS = 2.0
_THREAD_STOP_SECONDS = 5.0


class SyncBackfillClient:
    """Blocking twin of :class:`~backfill.client.async_client.BackfillClient` (same constructor arguments, plus
    ``call_timeout``: how long any one blocking call may take, in seconds)."""

    def __init__(
        self, database: str | BackfillClient, *, call_timeout: float = DEFAULT_CALL_TIMEOUT, **options: Any
    ) -> None:
        self._call_timeout = _checked_timeout(call_timeout)
        # An async client built elsewhere (from_env) may be wrapped; it must not have opened its pool yet,
        # since that pool would belong to another loop.
        self._client = database if isinstance(database, BackfillClient) else BackfillClient(database, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()  # the process that owns _loop and _thread
        _live_clients.add(self)

    @classmethod
    def from_env(cls, *, call_timeout: float = DEFAULT_CALL_TIMEOUT, **options: Any) -> SyncBackfillClient:
        """A client for ``DATABASE_URL`` and ``GRAPHILE_WORKER_SCHEMA``."""
        return cls(BackfillClient.from_env(**options), call_timeout=call_timeout)

    def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        job_key_mode: JobKeyMode | str | None = None,
        connection: Any = None,
        call_timeout: float | None = None,
        **options: Any,
    ) -> Job:
        """Enqueue one job (arguments as :meth:`BackfillClient.enqueue`); ``connection`` is a DB-API one.
        ``call_timeout`` overrides the client's for this call (``timeout`` is the job's own, as in the async
        client)."""
        operation, timeout = f"enqueue({task!r})", self._timeout(call_timeout)
        if connection is not None:
            request = Enqueue(task, payload, **options)
            # The task's defaults come through the private loop (a catalog lookup on the client's own pool);
            # the job itself is written on the caller's connection, whose own settings (statement_timeout)
            # bound that write: it is the caller's transaction, not ours to cancel.
            defaults = self._call(operation, self._client.task_defaults(task), timeout)
            spec = self._client.build_spec(request, defaults)
            if lane_of(0, spec.flags) not in BUILT_IN_LANES:
                self._call(operation, self._client.warn_if_lane_undeclared(spec), timeout)
            return self._enqueue_on(connection, spec, job_key_mode)
        return self._call(operation, self._client.enqueue(task, payload, job_key_mode=job_key_mode, **options), timeout)

    def enqueue_fast(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.FAST_DEFAULT)
        return self.enqueue(task, payload, **options)

    def enqueue_bulk(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.BULK_DEFAULT)
        return self.enqueue(task, payload, **options)

    def enqueue_critical(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.EMERGENCY)
        return self.enqueue(task, payload, **options)

    def enqueue_many(
        self,
        requests: Sequence[Enqueue],
        *,
        job_key_preserve_run_at: bool = False,
        call_timeout: float | None = None,
    ) -> list[Job]:
        timeout = self._timeout(call_timeout)  # checked before the coroutine exists, so none is left unawaited
        coroutine = self._client.enqueue_many(requests, job_key_preserve_run_at=job_key_preserve_run_at)
        return self._call(f"enqueue_many(<{len(requests)} requests>)", coroutine, timeout)

    # -- outcomes: BackfillClient's, blocking -------------------------------------------------------------------

    def result(self, job: int | Job, *, call_timeout: float | None = None) -> JobOutcome | None:
        """:meth:`BackfillClient.result`: the job's outcome, or ``None`` while it is queued or running."""
        timeout = self._timeout(call_timeout)
        return self._call("result", self._client.result(job), timeout)

    def wait(
        self,
        job: int | Job,
        *,
        timeout: float | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        call_timeout: float | None = None,
    ) -> JobOutcome:
        """:meth:`BackfillClient.wait`, blocking this thread: at most ``timeout`` seconds (``None``: until the job
        ends), plus ``call_timeout`` for the reads around the wait."""
        bound = None if timeout is None else timeout + self._timeout(call_timeout)
        coroutine = self._client.wait(job, timeout=timeout, poll_interval=poll_interval)
        return self._call("wait", coroutine, bound)

    # -- operator controls: BackfillClient's, blocking ----------------------------------------------------------

    def pause(self, *, call_timeout: float | None = None, **target: Any) -> Pause:
        """:meth:`BackfillClient.pause`: ``lane=``, ``queue=`` or ``task=``, with ``by=`` and ``reason=``."""
        timeout = self._timeout(call_timeout)
        return self._call("pause", self._client.pause(**target), timeout)

    def resume(self, *, call_timeout: float | None = None, **target: Any) -> Pause | None:
        timeout = self._timeout(call_timeout)
        return self._call("resume", self._client.resume(**target), timeout)

    def pauses(self, *, call_timeout: float | None = None) -> list[Pause]:
        timeout = self._timeout(call_timeout)
        return self._call("pauses", self._client.pauses(), timeout)

    def cancel(
        self, job_ids: Sequence[int], *, call_timeout: float | None = None, **options: Any
    ) -> list[CancelResult]:
        """:meth:`BackfillClient.cancel`: cancel queued or running jobs, one answer per distinct id."""
        timeout = self._timeout(call_timeout)
        return self._call(f"cancel(<{len(job_ids)} ids>)", self._client.cancel(job_ids, **options), timeout)

    def cancellations(
        self, job_ids: Sequence[int] | None = None, *, call_timeout: float | None = None, **options: Any
    ) -> list[Cancellation]:
        timeout = self._timeout(call_timeout)
        return self._call("cancellations", self._client.cancellations(job_ids, **options), timeout)

    def close(self, *, call_timeout: float | None = None) -> None:
        """Close the pool and stop the private loop's thread. Calls of other threads still running get until
        the timeout to finish; then they are cancelled, statements included, and raise :class:`DatabaseError`.
        Returns within the timeout plus a few seconds. In a forked child this closes only what the child
        opened itself."""
        timeout = self._timeout(call_timeout)
        with self._lock:
            self._forget_if_forked()
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._close_on_loop(timeout), loop)
        try:
            future.result(timeout + 3 * _CANCEL_GRACE_SECONDS)
        except TimeoutError:
            future.cancel()  # only if the loop itself is blocked; the thread is then left behind (a daemon)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_THREAD_STOP_SECONDS)
        if thread.is_alive():
            logger.warning("SyncBackfillClient.close: the loop thread did not stop; leaving it behind")
        else:
            loop.close()

    def __enter__(self) -> SyncBackfillClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _call(self, operation: str, coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            return future.result(timeout)
        except TimeoutError:
            # Still pending: cancelling it cancels the task on the loop, and asyncpg then cancels the statement
            # on the server. Already done: it finished right at the deadline, or raised a TimeoutError itself.
            if future.cancel():
                raise CallTimeoutError(f"SyncBackfillClient.{operation}", timeout or 0.0) from None
            return future.result()
        except concurrent.futures.CancelledError:
            # close() cancels what still runs on the loop it is about to stop.
            raise DatabaseError(f"SyncBackfillClient.{operation} was interrupted: the client was closed") from None

    def _timeout(self, call_timeout: float | None) -> float:
        return self._call_timeout if call_timeout is None else _checked_timeout(call_timeout)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            self._forget_if_forked()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="backfill-sync-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _forget_if_forked(self) -> None:
        # Called with _lock held. In a forked child the loop's thread does not exist (a call would wait for ever)
        # and the loop's selector is shared with the parent's; the child starts its own instead. The async
        # client's pool notices the fork by itself (LazyPool).
        if self._pid != os.getpid():
            abandon_after_fork(self._loop, self._thread)
            self._loop = self._thread = None
            self._pid = os.getpid()

    async def _close_on_loop(self, seconds: float) -> None:
        # Calls of other threads still running get the time left to finish, then are cancelled: asyncpg then
        # cancels their statements on the server. Terminating their connections instead would not stop them: a
        # backend waiting for a lock does not notice its client is gone, and would write the job after all.
        deadline = asyncio.get_running_loop().time() + seconds
        current = asyncio.current_task()
        calls = [task for task in asyncio.all_tasks() if task is not current]
        if calls:
            _, late = await asyncio.wait(calls, timeout=seconds)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=_CANCEL_GRACE_SECONDS)
        try:
            async with asyncio.timeout(max(deadline - asyncio.get_running_loop().time(), _CANCEL_GRACE_SECONDS)):
                await self._client.close()  # cancelled, asyncpg terminates the pool's connections instead
        except TimeoutError:
            logger.warning("SyncBackfillClient.close: the pool did not close within %gs; terminated it", seconds)
        # asyncpg sends its cancel requests from tasks of its own; let them reach the server before the loop stops.
        leftovers = [task for task in asyncio.all_tasks() if task is not current]
        if leftovers:
            await asyncio.wait(leftovers, timeout=_CANCEL_GRACE_SECONDS)

    def _enqueue_on(self, connection: Any, spec: JobSpec, job_key_mode: JobKeyMode | str | None) -> Job:
        # The core's statement and arguments for this spec, numbered the way DB-API drivers number parameters
        # (the mode is checked before the connection is used).
        statement, arguments, _ = enqueue_statement(spec, job_key_mode, self._client.schema, dbapi=True)
        cursor = connection.cursor()
        try:
            cursor.execute(statement, arguments)
            row = cursor.fetchone()
            columns = [column[0] for column in cursor.description]
        except Exception as error:  # the driver's own error classes; keep them as the cause
            raise DatabaseError(f"add_job({spec.identifier!r}) failed: {error}") from error
        finally:
            cursor.close()
        if row is None:
            raise DatabaseError(f"add_job({spec.identifier!r}) wrote no job: job key {spec.job_key!r} is busy")
        return Job.from_record(dict(zip(columns, row, strict=True)), task_identifier=spec.identifier)


def _checked_timeout(value: Any) -> float:
    check_number("call_timeout:", value, above=0, must="a positive number of seconds")
    return float(value)


_default: dict[str, SyncBackfillClient] = {}
_default_lock = threading.Lock()
_live_clients: weakref.WeakSet[SyncBackfillClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at the moment of the fork stays held for ever in the child,
    # where that thread does not exist. Nothing else runs in the child yet, so new locks are safe.
    global _default_lock  # noqa: PLW0603 - replaced only here, in a child where no other thread runs yet
    _default_lock = threading.Lock()
    for client in list(_live_clients):
        client._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_client() -> SyncBackfillClient:
    """The process's default synchronous client, built from the environment on first use."""
    with _default_lock:
        if "client" not in _default:
            _default["client"] = SyncBackfillClient.from_env()
        return _default["client"]


def enqueue(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue(task, payload, **options)


def enqueue_fast(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_fast(task, payload, **options)


def enqueue_bulk(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_bulk(task, payload, **options)


def enqueue_critical(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_critical(task, payload, **options)
