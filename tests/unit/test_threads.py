"""DaemonThreadExecutor: runs callables on daemon threads, bounded, and never holds up interpreter exit."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import CancelledError

import pytest

from backfill.core.run.threads import DaemonThreadExecutor


def test_results_and_exceptions_reach_the_future() -> None:
    executor = DaemonThreadExecutor(2)
    try:
        assert executor.submit(lambda a, b: a + b, 2, b=3).result(timeout=5) == 5

        def fail() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            executor.submit(fail).result(timeout=5)
    finally:
        executor.shutdown()


def test_threads_are_daemons_and_at_most_max_workers_run_at_once() -> None:
    executor = DaemonThreadExecutor(3)
    release = threading.Event()
    lock = threading.Lock()
    running = 0
    peak = 0
    daemons: list[bool] = []

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            daemons.append(threading.current_thread().daemon)
        release.wait(timeout=5)
        with lock:
            running -= 1

    futures = [executor.submit(work) for _ in range(7)]
    deadline = time.monotonic() + 5
    while executor.busy < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert executor.busy == 3  # three running, four waiting for a thread
    release.set()
    for future in futures:
        future.result(timeout=5)
    executor.shutdown()
    assert peak == 3
    assert daemons and all(daemons)


def test_idle_threads_are_reused() -> None:
    executor = DaemonThreadExecutor(4)
    names = {executor.submit(lambda: threading.current_thread().name).result(timeout=5) for _ in range(20)}
    executor.shutdown()
    assert len(names) == 1


def test_shutdown_cancels_queued_work_and_refuses_more() -> None:
    executor = DaemonThreadExecutor(1)
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(timeout=5)

    first = executor.submit(block)
    started.wait(timeout=5)
    queued = executor.submit(lambda: None)
    executor.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        queued.result(timeout=5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(lambda: None)
    release.set()
    first.result(timeout=5)


def test_a_stuck_callable_does_not_keep_the_interpreter_alive() -> None:
    # The reason the class exists: ThreadPoolExecutor's threads are joined at exit.
    script = (
        "import time\n"
        "from backfill.core.run.threads import DaemonThreadExecutor\n"
        "executor = DaemonThreadExecutor(1)\n"
        "executor.submit(time.sleep, 60)\n"
        "executor.shutdown(wait=False)\n"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
    assert time.monotonic() - started < 20
