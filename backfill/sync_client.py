"""The blocking API for synchronous services (Django, Flask, scripts).

``SyncBackfillClient`` has the methods of :class:`~backfill.client.BackfillClient`, blocking. Two ways to
reach the database:

* on its own: an asyncio loop on a private daemon thread runs an async client with its own small pool, and
  every call waits for its result (thread-safe; any number of threads may share one client);
* inside *your* transaction: pass ``connection=`` a DB-API connection (psycopg 3, psycopg2 — Django's
  ``django.db.connection`` and SQLAlchemy's ``engine.raw_connection()`` are such), and the job is written with
  Graphile's ``add_job`` on that connection, so it exists only if your transaction commits.

Module-level ``enqueue``/``enqueue_fast``/``enqueue_bulk``/``enqueue_critical`` here use one default
synchronous client built from the environment.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from backfill.client import BackfillClient, Enqueue
from backfill.core.enqueue import add_job_arguments, add_job_sql
from backfill.core.errors import DatabaseError
from backfill.core.jobs import Job, JobKeyMode, JobSpec
from backfill.priorities import Priority

T = TypeVar("T")


class SyncBackfillClient:
    """Blocking twin of :class:`~backfill.client.BackfillClient` (same constructor arguments)."""

    def __init__(self, database: str | BackfillClient, **options: Any) -> None:
        # An async client built elsewhere (from_env) may be wrapped; it must not have opened its pool yet,
        # since that pool would belong to another loop.
        self._client = database if isinstance(database, BackfillClient) else BackfillClient(database, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, **options: Any) -> SyncBackfillClient:
        """A client for ``DATABASE_URL`` and ``GRAPHILE_WORKER_SCHEMA``."""
        return cls(BackfillClient.from_env(**options))

    def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        job_key_mode: JobKeyMode | str | None = None,
        connection: Any = None,
        **options: Any,
    ) -> Job:
        """Enqueue one job (arguments as :meth:`BackfillClient.enqueue`); ``connection`` is a DB-API one."""
        if connection is not None:
            request = Enqueue(task, payload, **options)
            # The task's defaults come through the private loop (a catalog lookup on the client's own pool);
            # the job itself is written on the caller's connection.
            spec = self._client.build_spec(request, self._call(self._client.task_defaults(task)))
            return self._enqueue_on(connection, spec, job_key_mode)
        return self._call(self._client.enqueue(task, payload, job_key_mode=job_key_mode, **options))

    def enqueue_fast(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.FAST_DEFAULT)
        return self.enqueue(task, payload, **options)

    def enqueue_bulk(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.BULK_DEFAULT)
        return self.enqueue(task, payload, **options)

    def enqueue_critical(self, task: str, payload: Any = None, **options: Any) -> Job:
        options.setdefault("priority", Priority.EMERGENCY)
        return self.enqueue(task, payload, **options)

    def enqueue_many(self, requests: Sequence[Enqueue], *, job_key_preserve_run_at: bool = False) -> list[Job]:
        return self._call(self._client.enqueue_many(requests, job_key_preserve_run_at=job_key_preserve_run_at))

    def close(self) -> None:
        """Close the pool and stop the private loop's thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._client.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> SyncBackfillClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop()).result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="backfill-sync-client", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _enqueue_on(self, connection: Any, spec: JobSpec, job_key_mode: JobKeyMode | str | None) -> Job:
        # The core's add_job statement and arguments, numbered the way DB-API drivers number parameters.
        arguments = add_job_arguments(spec, job_key_mode)  # checks the mode before the connection is used
        statement = add_job_sql(self._client.schema, dbapi=True)
        cursor = connection.cursor()
        try:
            cursor.execute(statement, arguments)
            row = cursor.fetchone()
            columns = [column[0] for column in cursor.description]
        except Exception as error:  # the driver's own error classes; keep them as the cause
            raise DatabaseError(f"add_job({spec.identifier!r}) failed: {error}") from error
        finally:
            cursor.close()
        if row is None:
            raise DatabaseError(f"add_job({spec.identifier!r}) wrote no job: job key {spec.job_key!r} is busy")
        return Job.from_record(dict(zip(columns, row, strict=True)), task_identifier=spec.identifier)


_default: dict[str, SyncBackfillClient] = {}
_default_lock = threading.Lock()


def default_client() -> SyncBackfillClient:
    """The process's default synchronous client, built from the environment on first use."""
    with _default_lock:
        if "client" not in _default:
            _default["client"] = SyncBackfillClient.from_env()
        return _default["client"]


def enqueue(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue(task, payload, **options)


def enqueue_fast(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_fast(task, payload, **options)


def enqueue_bulk(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_bulk(task, payload, **options)


def enqueue_critical(task: str, payload: Any = None, **options: Any) -> Job:
    return default_client().enqueue_critical(task, payload, **options)
