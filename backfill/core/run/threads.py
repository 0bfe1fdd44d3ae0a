"""The thread pool synchronous handlers run in.

Why not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined when the interpreter exits, so a
synchronous handler that is still running after the worker's shutdown grace period (the worker has already
recorded the job as interrupted and released it) would keep the process alive until the handler returned —
an orchestrator's SIGTERM would turn into a SIGKILL. Threads here are daemons: once the worker gives up on a
handler, the process can exit without it.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_WorkItem = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadExecutor(Executor):
    """At most ``max_workers`` daemon threads, started as work arrives and reused while idle."""

    def __init__(self, max_workers: int, *, thread_name_prefix: str = "backfill-sync") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._prefix = thread_name_prefix
        self._numbers = itertools.count(1)
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)  # one permit per thread waiting for work
        self._lock = threading.Lock()
        self._shut_down = False
        self._busy = 0

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new work after shutdown")
            self._work.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._run, name=f"{self._prefix}-{next(self._numbers)}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                with self._lock:
                    self._busy += 1
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:  # handed to the awaiting coroutine, as ThreadPoolExecutor does
                    future.set_exception(error)
                else:
                    future.set_result(result)
                finally:
                    with self._lock:
                        self._busy -= 1
            del item, future, fn, args, kwargs  # do not keep the last job's objects alive while idle
            self._idle.release()

    def add_thread(self) -> None:
        """Allow one more thread: a handler abandoned as stuck keeps its thread, and must not keep another
        job's synchronous handler from starting. The extra thread is reused once the stuck one returns."""
        with self._lock:
            self._max_workers += 1

    @property
    def busy(self) -> int:
        """How many callables are running right now."""
        return self._busy

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut_down = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            for _ in self._threads:
                self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()
