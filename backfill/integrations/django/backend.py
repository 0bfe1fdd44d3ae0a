"""``BackfillBackend``: Django's Tasks framework (``django.tasks``; the ``django-tasks`` backport before
Django 6) enqueueing into backfill.

Configure it in ``settings.TASKS``::

    TASKS = {
        "default": {
            "BACKEND": "backfill.integrations.django.backend.BackfillBackend",
            "QUEUES": ["default", "emails"],        # "emails" runs in backfill's lane "emails"
            "OPTIONS": {"KEEP_RESULT": 86400},       # seconds each job's outcome is kept
        }
    }

``task.enqueue(...)`` writes the job with Graphile's ``add_job`` on the Django connection of
``OPTIONS["DATABASE"]`` (``"default"``): inside ``transaction.atomic()`` the job commits or rolls back with the
block; outside one (autocommit) it is committed at once. The returned ``TaskResult`` has the job's id as its id.
``get_result(id)`` reads the job's row, or its kept outcome once it has ended (see
:mod:`backfill.integrations.django.results`). ``manage.py backfill_worker`` runs the tasks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils import timezone

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient
from backfill.core import (
    ConfigurationError,
    DatabaseError,
    Job,
    JobSpecError,
    ResultUnavailableError,
    SchemaName,
)
from backfill.core.extension import check_retention, enqueue_statement
from backfill.integrations.django.compat import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    status,
    task_enqueued,
)
from backfill.integrations.django.database import url_from_django
from backfill.integrations.django.results import finished_result, live_result, read_live_job
from backfill.integrations.django.translate import backfill_priority, encode_arguments, lane_for_queue
from backfill.tasks.retry_policies import RetryPolicy, resolve_policy

P = ParamSpec("P")
T = TypeVar("T")

# A day: long enough for whoever enqueued a task to come back for its result, short enough that the results
# table of a busy site stays small (rows are pruned about a minute after they expire).
DEFAULT_KEEP_RESULT_SECONDS = 86400.0
# Graphile's tasks_identifier_check: a task identifier is at most 128 characters.
MAX_IDENTIFIER_LENGTH = 128
_KNOWN_OPTIONS = frozenset({"DATABASE", "DATABASE_URL", "SCHEMA", "KEEP_RESULT", "RETRY_POLICY", "TASK_MODULES"})


class BackfillBackend(BaseTaskBackend):
    """A Django task backend whose tasks are backfill jobs. ``OPTIONS`` (all optional):

    * ``DATABASE`` — the Django database alias jobs are written on, in its transaction (``"default"``);
    * ``DATABASE_URL`` — where backfill's own connections go (results, workers); by default the URL of the
      ``DATABASE`` alias's settings. It must reach the same database;
    * ``SCHEMA`` — Graphile's schema (``GRAPHILE_WORKER_SCHEMA``, else ``graphile_worker``);
    * ``KEEP_RESULT`` — seconds (or a ``timedelta``) each job's outcome is kept for ``get_result`` (a day);
    * ``RETRY_POLICY`` — a backfill retry preset (``fast``, ``default``, ...) or a ``RetryPolicy``
      (``BACKFILL_DEFAULT_RETRY_POLICY``, else ``default``);
    * ``TASK_MODULES`` — modules the worker imports for tasks, beyond each installed app's ``tasks`` module.
    """

    supports_defer = True  # run_after is the job's run_at
    supports_async_task = True  # coroutine functions run on the worker's event loop
    supports_get_result = True  # from any process, while the outcome is kept
    supports_priority = True  # the backport's flag; Django 6 always accepts priorities

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options: Mapping[str, Any] = params.get("OPTIONS", {})
        unknown = sorted(set(options) - _KNOWN_OPTIONS)
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['OPTIONS']: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(_KNOWN_OPTIONS))}"
            )
        self.database: str = options.get("DATABASE", "default")
        self._database_url: str | None = options.get("DATABASE_URL")
        try:
            self.schema = SchemaName.coerce(options.get("SCHEMA"))
            self.keep_result = check_retention("KEEP_RESULT", options.get("KEEP_RESULT", DEFAULT_KEEP_RESULT_SECONDS))
            policy = options.get("RETRY_POLICY")
            self.retry_policy: RetryPolicy | None = None if policy is None else resolve_policy(policy)
            for queue in self.queues:
                lane_for_queue(queue)  # a queue name must be able to name a lane: refused now, not at enqueue
        except (ConfigurationError, JobSpecError) as error:
            raise ImproperlyConfigured(f"TASKS[{alias!r}]: {error}") from None
        self.task_modules: tuple[str, ...] = tuple(options.get("TASK_MODULES", ()))
        self._lock = threading.Lock()
        self._clients: tuple[BackfillClient, SyncBackfillClient] | None = None

    # -- configuration ------------------------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The URL of backfill's own connections: ``OPTIONS["DATABASE_URL"]``, or built from the alias."""
        if self._database_url is not None:
            return self._database_url
        try:
            return url_from_django(self.database, django_settings.DATABASES[self.database])
        except KeyError:
            raise ImproperlyConfigured(
                f"TASKS[{self.alias!r}]['OPTIONS']['DATABASE']: no database alias {self.database!r}"
            ) from None
        except ConfigurationError as error:
            raise ImproperlyConfigured(str(error)) from None

    def _client(self) -> tuple[BackfillClient, SyncBackfillClient]:
        # Built on first use: Django builds backends at import time of the first task module, before a worker
        # process has even read its settings. The blocking client starts its loop thread and pool only when a
        # result is read; enqueueing never opens a connection of its own.
        with self._lock:
            if self._clients is None:
                options: dict[str, Any] = {"schema": self.schema}
                if self.retry_policy is not None:
                    options["default_retry_policy"] = self.retry_policy
                client = BackfillClient(self.database_url, **options)
                self._clients = (client, SyncBackfillClient(client))
            return self._clients

    def validate_task(self, task: Task[Any, Any]) -> None:
        super().validate_task(task)
        if len(task.module_path) > MAX_IDENTIFIER_LENGTH:
            raise InvalidTaskError(
                f"the task's module path is its backfill task identifier, at most {MAX_IDENTIFIER_LENGTH} "
                f"characters; {task.module_path!r} has {len(task.module_path)}"
            )
        try:
            lane_for_queue(task.queue_name)  # when QUEUES is empty, any queue name is allowed: check it here
        except JobSpecError as error:
            raise InvalidTaskError(str(error)) from None

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        if self.database not in django_settings.DATABASES:
            yield checks.Error(
                f"TASKS[{self.alias!r}]: OPTIONS['DATABASE'] names no database alias ({self.database!r})",
                id="backfill.E001",
            )
        elif connections[self.database].vendor != "postgresql":
            yield checks.Error(
                f"TASKS[{self.alias!r}]: database {self.database!r} is not PostgreSQL; backfill writes jobs on it",
                id="backfill.E002",
            )

    # -- enqueue ------------------------------------------------------------------------------------------------

    def enqueue(self, task: Task[P, T], args: P.args, kwargs: P.kwargs) -> TaskResult[T]:  # type: ignore[valid-type]
        self.validate_task(task)
        payload = encode_arguments(args, kwargs)
        client, _ = self._client()
        spec = client.build_spec(
            Enqueue(
                task.module_path,
                payload,
                priority=backfill_priority(task.priority),
                lane=lane_for_queue(task.queue_name),
                run_at=_aware(task.run_after),
                keep_result=self.keep_result,
            )
        )
        job = self._write(spec)
        result: TaskResult[T] = TaskResult(
            task=task,
            id=str(job.id),
            status=status("READY"),
            enqueued_at=job.created_at,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=payload["args"],
            kwargs=payload["kwargs"],
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    def _write(self, spec: Any) -> Job:
        connection = connections[self.database]
        # A transaction already broken by an error raises here, as the ORM's next query would.
        connection.validate_no_broken_transaction()
        connection.ensure_connection()
        statement, arguments, _ = enqueue_statement(spec, None, self.schema, dbapi=True)
        # The driver's own connection, not Django's cursor: with DEBUG on, Django records and logs every
        # query with its parameters, and the payload must not reach a log. Its transaction is Django's.
        cursor = connection.connection.cursor()
        try:
            cursor.execute(statement, arguments)
            row = cursor.fetchone()
            columns = [column[0] for column in cursor.description]
        except Exception as error:  # the driver's errors; the message names the task, never the payload
            raise DatabaseError(f"add_job({spec.identifier!r}) failed: {type(error).__name__}") from error
        finally:
            cursor.close()
        return Job.from_record(dict(zip(columns, row, strict=True)), task_identifier=spec.identifier)

    # -- results ------------------------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[Any]:
        job_id = _job_id(result_id)
        job = read_live_job(_connected(self.database), self.schema, job_id)
        if job is not None and not job.failed_for_good:
            return live_result(result_id, job, backend=self.alias)
        try:
            outcome = self._client()[1].result(job_id)
        except ResultUnavailableError as error:
            raise TaskResultDoesNotExist(str(error)) from None
        if outcome is None:
            if job is None:  # gone between the two reads and not ended: cannot be; say so rather than guess
                raise TaskResultDoesNotExist(f"job {job_id}: not found")
            return live_result(result_id, job, backend=self.alias)
        return finished_result(result_id, outcome, backend=self.alias)

    def wait(self, result_id: str, *, timeout: float | None = None) -> TaskResult[Any]:
        """Block until the task has finished (woken by the worker), then :meth:`get_result`. Raises
        :class:`TimeoutError` (backfill's ``ResultTimeoutError``) after ``timeout`` seconds, and
        ``TaskResultDoesNotExist`` for a job that will keep no outcome. Not part of Django's API: a backfill
        extension for code that needs the value now (a management command, a test)."""
        job_id = _job_id(result_id)
        try:
            self._client()[1].wait(job_id, timeout=timeout)
        except ResultUnavailableError as error:
            raise TaskResultDoesNotExist(str(error)) from None
        return self.get_result(result_id)

    def close(self) -> None:
        """Close backfill's own connections (the results reader's pool), if any were opened."""
        with self._lock:
            clients, self._clients = self._clients, None
        if clients is not None:
            clients[1].close()


def _job_id(result_id: str) -> int:
    text = str(result_id)
    if not text.isascii() or not text.isdigit():
        raise TaskResultDoesNotExist(f"{result_id!r} is not a backfill job id")
    return int(text)


def _connected(alias: str) -> Any:
    connection = connections[alias]
    connection.ensure_connection()
    return connection.connection


def _aware(run_after: datetime | None) -> datetime | None:
    # With USE_TZ = False, Django passes naive datetimes in settings.TIME_ZONE; Graphile stores timestamptz.
    if run_after is None or timezone.is_aware(run_after):
        return run_after
    aware: datetime = timezone.make_aware(run_after)
    return aware
