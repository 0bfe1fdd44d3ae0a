"""backfill-runner: the backfill layer as an application runs it — ``BackfillClient`` to enqueue (a retry
policy flag on every job) and ``WorkerRunner`` to work: Fast and Bulk lanes on one pool, retry planner,
dead-letter mover, metrics observing every job, queue-statistics collector. Everything at its defaults
except the lanes' concurrency, which is the benchmark's (the no-op jobs are all in the Bulk lane, except
the Fast-lane phase's stamped jobs, enqueued at ``Priority.FAST_DEFAULT``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.control import pause
from backfill.core import SchemaName, TaskRegistry
from backfill.migrations import migrate_all
from backfill.priorities import Priority
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from bench.drivers.backfill_driver import BackfillDriver
from bench.drivers.base import TASK_NAME, Client, JobHandler


class _Client:
    """Bulk calls go through ``enqueue_many`` on the connection the core driver also uses, for a like-for-like
    comparison with ``add_jobs``; single jobs go through the client's own pool, as an application's
    ``await client.enqueue(...)`` does (the pooled path is the one issue #11 measures)."""

    def __init__(self, client: BackfillClient, connection: asyncpg.Connection[Any]) -> None:
        self._client = client
        self._connection = connection

    async def add_batch(self, payloads: Sequence[dict[str, Any]]) -> None:
        await self._client.enqueue_many(
            [Enqueue(TASK_NAME, payload) for payload in payloads], connection=self._connection
        )

    async def add_one(self, payload: dict[str, Any]) -> None:
        await self._client.enqueue(TASK_NAME, payload)

    async def add_fast(self, payload: dict[str, Any]) -> None:
        await self._client.enqueue(TASK_NAME, payload, priority=Priority.FAST_DEFAULT)


class RunnerDriver(BackfillDriver):
    """Installs the schema like the core driver; enqueues and works through the layer."""

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        connection = await asyncpg.connect(self.dsn)
        try:
            # The client's pool (its default size) is opened here, before any timing, as the core driver
            # connects first.
            async with BackfillClient(self.dsn, schema=self.schema) as client:
                yield _Client(client, connection)
        finally:
            await connection.close()

    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        registry = TaskRegistry()

        @registry.task(TASK_NAME)
        async def noop(payload: dict[str, Any]) -> None:
            on_job(payload)

        settings = BackfillSettings.load(
            env_file=None,
            database_url=self.dsn,
            schema_name=self.schema,
            fast_queue_concurrency=concurrency,
            bulk_queue_concurrency=concurrency,
        )
        async with WorkerRunner(settings, tasks=registry):
            on_started()
            await stop.wait()


# Names the benchmark's jobs never use: pausing them must not slow the fetch of everything else.
UNRELATED = "bench-unrelated"


class PausedRunnerDriver(RunnerDriver):
    """backfill-runner-paused: the runner with an unrelated named queue and an unrelated task paused, so every
    claim runs the variant of the fetch that leaves paused queues out (issue #12: pausing must not slow the
    fetch of unpaused work)."""

    async def work(
        self, concurrency: int, on_job: JobHandler, stop: asyncio.Event, on_started: Callable[[], None]
    ) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            schema = SchemaName(self.schema)
            await migrate_all(connection, schema)
            await pause(connection, schema, queue=UNRELATED, by="bench")
            await pause(connection, schema, task=UNRELATED, by="bench")
        finally:
            await connection.close()
        await super().work(concurrency, on_job, stop, on_started)
