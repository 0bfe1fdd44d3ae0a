"""SIGINT/SIGTERM handling for a worker that runs as a process's main job (the CLI sets it up)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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

    def remove(self) -> None:
        if not self._installed:
            return
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        self._installed = False
