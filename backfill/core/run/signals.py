"""SIGINT/SIGTERM handling for a worker that runs as a process's main job (the CLI sets it up).

Start-up takes a while (imports, connecting, migrating, starting each lane), and a signal in that window must
not kill the process half-way nor be lost: :func:`record_stop_signals` makes the process remember such a
signal until a :class:`StopSignals` is installed on the running loop, which then delivers it at once.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Recorded:
    """The process's early signals: whether they are being recorded, and those received, oldest first."""

    def __init__(self) -> None:
        self.recording = False
        self.pending: list[int] = []


_early = _Recorded()


def record_stop_signals() -> None:
    """From now on, remember SIGINT/SIGTERM received while no :class:`StopSignals` is installed instead of
    dying of them (or raising KeyboardInterrupt). For a process whose main job is a worker: call it first."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; an embedding app owns them anyway
    for signum in STOP_SIGNALS:
        signal.signal(signum, _remember)
    _early.recording = True


def _remember(signum: int, _frame: FrameType | None) -> None:
    _early.pending.append(signum)


class StopSignals:
    """Routes SIGINT and SIGTERM to ``on_signal(signum)`` on the running loop while installed."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._on_signal = on_signal
        self._installed = False

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        self._installed = True
        # Delivered in order, on the loop, like the ones that arrive from now on.
        early, _early.pending[:] = list(_early.pending), []
        for received in early:
            loop.call_soon(self._on_signal, received)

    def remove(self) -> None:
        if not self._installed:
            return
        loop = asyncio.get_running_loop()
        for stop_signal in STOP_SIGNALS:
            loop.remove_signal_handler(stop_signal)
            if _early.recording:
                # A late signal (during the last clean-up) must not turn a clean exit into death by signal.
                signal.signal(stop_signal, _remember)
        self._installed = False
