"""procrastinate: its own tables, placed in the benchmark schema through the connection's search_path.

Configuration: library defaults (LISTEN/NOTIFY on, 5 s fallback polling, jobs kept after success) with
``concurrency`` and a psycopg pool of up to 10 connections, the pool size Node and backfill default to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import procrastinate

from bench.drivers.base import TASK_NAME, Client, Driver, JobHandler

POOL_SIZE = 10


class _Client:
    def __init__(self, task: Any) -> None:
        self._task = task

    async def add_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        await self._task.batch_defer_async(*payloads)

    async def add_one(self, payload: dict[str, Any]) -> None:
        await self._task.defer_async(**payload)


class ProcrastinateDriver(Driver):
    def _app(self, on_job: JobHandler | None = None) -> tuple[procrastinate.App, Any]:
        connector = procrastinate.PsycopgConnector(
            conninfo=self.dsn,
            kwargs={"options": f"-c search_path={self.schema}"},
            min_size=1,
            max_size=POOL_SIZE,
        )
        app = procrastinate.App(connector=connector)

        async def noop(**payload: Any) -> None:
            if on_job is not None:
                on_job(payload)

        return app, app.task(name=TASK_NAME)(noop)

    async def migrate(self) -> None:
        app, _ = self._app()
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        app, task = self._app()
        async with app.open_async():
            await app.connector.execute_query_async("select 1")
            yield _Client(task)

    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        app, _ = self._app(on_job)
        async with app.open_async():
            worker = asyncio.create_task(app.run_worker_async(concurrency=concurrency, install_signal_handlers=False))
            on_started()  # procrastinate has no "listening now" hook; the harness lets it settle first
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({worker, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if worker.done():
                worker.result()  # a worker that died raises here
                return
            worker.cancel()  # procrastinate documents cancellation as its graceful stop
            with suppress(asyncio.CancelledError):
                await worker
