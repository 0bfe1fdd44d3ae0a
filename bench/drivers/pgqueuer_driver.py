"""pgqueuer: its own tables, placed in the benchmark schema through the connection's search_path.

Configuration: library defaults, except that at most ``concurrency`` jobs run at once
(``max_concurrent_tasks``) and each dequeue takes up to half of that (pgqueuer requires the cap to be at
least twice the batch size).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from bench.drivers.base import TASK_NAME, Client, Driver, JobHandler


class _Client:
    def __init__(self, queries: Any) -> None:
        self._queries = queries

    async def add_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        encoded: list[bytes | None] = [json.dumps(p).encode() for p in payloads]
        await self._queries.enqueue([TASK_NAME] * len(encoded), encoded, [0] * len(encoded))

    async def add_one(self, payload: dict[str, Any]) -> None:
        await self._queries.enqueue(TASK_NAME, json.dumps(payload).encode())


class PgqueuerDriver(Driver):
    async def _connect(self) -> asyncpg.Connection[Any]:
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})

    async def migrate(self) -> None:
        connection = await self._connect()
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        connection = await self._connect()
        try:
            yield _Client(Queries(AsyncpgDriver(connection)))
        finally:
            await connection.close()

    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        connection = await self._connect()
        try:
            manager = QueueManager(Queries(AsyncpgDriver(connection)))

            @manager.entrypoint(TASK_NAME)
            async def noop(job: Job) -> None:
                on_job(json.loads(job.payload) if job.payload else {})

            runner = asyncio.create_task(manager.run(batch_size=concurrency // 2, max_concurrent_tasks=concurrency))
            on_started()  # pgqueuer has no "listening now" hook; the harness lets it settle first
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            manager.shutdown.set()
            await runner
        finally:
            if not connection.is_closed():
                await connection.close()
