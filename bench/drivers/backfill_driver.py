"""backfill: the core worker with ``WorkerOptions(concurrency=...)`` and every other option at its default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from backfill.core import JobSpec, TaskRegistry, Worker, WorkerOptions, add_job, add_jobs, migrate
from bench.drivers.base import TASK_NAME, Client, Driver, JobHandler


class _Client:
    def __init__(self, connection: asyncpg.Connection[Any], schema: str) -> None:
        self._connection = connection
        self._schema = schema

    async def add_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        specs = [JobSpec(TASK_NAME, payload) for payload in payloads]
        await add_jobs(self._connection, specs, schema=self._schema)

    async def add_one(self, payload: dict[str, Any]) -> None:
        await add_job(self._connection, TASK_NAME, payload, schema=self._schema)


class BackfillDriver(Driver):
    async def migrate(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await migrate(connection, self.schema)
        finally:
            await connection.close()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        connection = await asyncpg.connect(self.dsn)
        try:
            yield _Client(connection, self.schema)
        finally:
            await connection.close()

    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        registry = TaskRegistry()

        @registry.task(TASK_NAME)
        async def noop(payload: dict[str, Any]) -> None:
            on_job(payload)

        worker = Worker(self.dsn, tasks=registry, options=WorkerOptions(concurrency=concurrency, schema=self.schema))
        async with worker:  # returns once the worker is started
            on_started()
            await stop.wait()
