"""What a system has to provide to be measured: install, a connected client, and a worker."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

# Every system runs the same task: it records when it started and returns.
TASK_NAME = "noop"

JobHandler = Callable[[Mapping[str, Any]], None]


class Client(Protocol):
    """A connected enqueuer: connection set-up is done before any timing starts."""

    async def add_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        """Enqueue one job per payload through the system's bulk API, in one call."""

    async def add_one(self, payload: dict[str, Any]) -> None:
        """Enqueue one job through the system's single-job API."""


@runtime_checkable
class FastLaneClient(Protocol):
    """A client of a system with lanes: it can put one job where a busy bulk lane cannot delay it."""

    async def add_fast(self, payload: dict[str, Any]) -> None:
        """Enqueue one job for the system's fast lane through its single-job API."""


class Driver(ABC):
    """One system, installed in ``schema`` of the database at ``dsn``."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    @abstractmethod
    async def migrate(self) -> None:
        """Install the system's tables in ``schema`` (which the harness has just created, empty)."""

    @abstractmethod
    def client(self) -> AbstractAsyncContextManager[Client]:
        """A connected client for enqueueing."""

    @abstractmethod
    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        """Run a worker whose ``noop`` task calls ``on_job(payload)`` first thing, until ``stop`` is set.

        ``on_started`` is called once the worker is running (as soon as the system lets us know).
        """
