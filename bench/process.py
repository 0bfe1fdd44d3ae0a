"""A driver subprocess seen from the harness: its protocol messages, its stderr, and stopping it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque
from collections.abc import Collection
from typing import Any

from bench.protocol import parse

_STDERR_LINES_KEPT = 30


class DriverError(Exception):
    """A driver failed, timed out or said something unexpected; the message ends with its stderr."""


class DriverProcess:
    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name = name
        self._process = process
        self._messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)
        self._readers = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    @classmethod
    async def start(cls, name: str, argv: list[str], env: dict[str, str]) -> DriverProcess:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=64 * 1024 * 1024,  # a worker's result carries every latency sample on one line
        )
        return cls(name, process)

    async def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        async for line in self._process.stdout:
            message = parse(line)
            if message is not None:
                await self._messages.put(message)
        await self._messages.put(None)  # end of output: the process is exiting

    async def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        async for line in self._process.stderr:
            self._stderr.append(line.decode(errors="replace").rstrip())

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.returncode is None

    def error(self, what: str) -> DriverError:
        tail = "\n".join(self._stderr)
        return DriverError(f"{self.name}: {what}" + (f"\n--- stderr (last lines) ---\n{tail}" if tail else ""))

    async def expect(self, event: str, within: float, *, skipping: Collection[str] = ()) -> dict[str, Any]:
        """The next message, which must be ``event`` once messages of the ``skipping`` kinds are passed over."""
        try:
            async with asyncio.timeout(within):
                message = await self._messages.get()
                while message is not None and message["event"] in skipping:
                    message = await self._messages.get()
        except TimeoutError:
            raise self.error(f"no {event!r} message within {within:.0f} s") from None
        if message is None:
            await self._settle()
            raise self.error(f"exited with code {self._process.returncode} before sending {event!r}")
        if message["event"] != event:
            raise self.error(f"sent {message['event']!r} while {event!r} was expected")
        return message

    async def _settle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, self._process.wait()), 5)

    async def wait(self, within: float) -> None:
        """Wait for a clean exit; a non-zero exit is an error."""
        try:
            await asyncio.wait_for(self._process.wait(), within)
        except TimeoutError:
            raise self.error(f"did not exit within {within:.0f} s") from None
        await self._settle()
        if self._process.returncode != 0:
            raise self.error(f"exited with code {self._process.returncode}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.running:
            self._process.send_signal(signum)

    async def close(self, grace: float = 30.0) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.running:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), grace)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        await self._settle()
        for reader in self._readers:
            reader.cancel()
