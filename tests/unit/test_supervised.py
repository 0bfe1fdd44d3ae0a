"""A worker process's watch on its supervisor: the end of the supervisor's pipe becomes a SIGTERM to itself (a
graceful stop); a variable naming no open descriptor is ignored rather than taken for a dead supervisor."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from backfill.runner.supervised import SUPERVISOR_FD_VARIABLE, watch_supervisor


@pytest.fixture
def sigterm_received() -> Iterator[threading.Event]:
    received = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: received.set())
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_the_supervisors_end_of_the_pipe_closing_stops_the_process(sigterm_received: threading.Event) -> None:
    read_end, write_end = os.pipe()
    try:
        assert watch_supervisor({SUPERVISOR_FD_VARIABLE: str(read_end)})
        assert not sigterm_received.is_set()
        os.close(write_end)  # what the kernel does when the supervisor exits, however it dies
        assert sigterm_received.wait(10), "no SIGTERM after the supervisor's end closed"
    finally:
        os.close(read_end)


@pytest.mark.parametrize("value", ["", "nine", "987654"])
def test_a_stale_or_bad_variable_is_not_a_dead_supervisor(value: str, sigterm_received: threading.Event) -> None:
    assert not watch_supervisor({SUPERVISOR_FD_VARIABLE: value})
    assert not watch_supervisor({})
    assert not sigterm_received.is_set()
