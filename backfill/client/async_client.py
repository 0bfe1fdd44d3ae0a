"""BackfillClient: enqueue jobs with priorities, lanes, serial queues and retry policies.

``await client.enqueue("send_email", {...}, priority=Priority.FAST_HIGH)`` builds the job (the task's
defaults from ``@backfill.task``, then the client's, then the caller's arguments), writes its retry policy
into the job (``max_attempts`` and a flag the worker reads back) and calls Graphile's ``add_job``, so any
worker, Node's included, can run it. Pass ``connection=`` to enqueue inside your own transaction: the job
exists only if that transaction commits.

Module-level ``enqueue``, ``enqueue_fast``, ``enqueue_bulk`` and ``enqueue_critical`` use a default client
built from the environment (``DATABASE_URL``, ``GRAPHILE_WORKER_SCHEMA``) on first use.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, overload

import asyncpg

from backfill import control
from backfill.client.payload_limit import DEFAULT_MAX_PAYLOAD_BYTES, check_limit, enforce_limit
from backfill.control import Cancellation, CancelResult, Pause
from backfill.core import (
    ConfigurationError,
    Job,
    JobKeyMode,
    JobSpec,
    JobSpecError,
    PayloadTooLargeError,
    SchemaName,
    add_jobs,
)
from backfill.core.extension import (
    RESULT_FLAG,
    ConnectionSource,
    LazyPool,
    add_job_spec,
    check_name,
    check_number,
    is_int,
    is_number,
    is_set,
    result_flag,
    value_of,
    without_values,
)
from backfill.lanes.catalog import LaneCatalog
from backfill.lanes.lane import BUILT_IN_LANES, LANE, lane_flags, lane_of
from backfill.migrations import migrate_all
from backfill.priorities import Priority
from backfill.results.models import JobOutcome
from backfill.results.reader import OutcomeReader, as_job_id
from backfill.results.waiter import DEFAULT_POLL_INTERVAL, OutcomeWaiter
from backfill.tasks.catalog import TaskCatalog
from backfill.tasks.defaults import TaskDefaults, defaults_for
from backfill.tasks.payloads import PAYLOAD_CHECKS, checked_payload
from backfill.tasks.retry_policies import RETRY, RetryPolicy, resolve_policy


class EnqueueObserver(Protocol):
    """What the client tells metrics about (``BackfillMetrics`` has this method)."""

    def job_enqueued(self, task: str, priority: int, flags: Any, count: int = 1) -> None: ...


# Not frozen: a bulk enqueue builds thousands of these, and a frozen dataclass's __init__ (object.__setattr__
# field by field) cost 1.3 of the 1.5 us of building one. Frozen bought little: its payload, a dict, already
# made it unhashable, and enqueue_many reads each request once, before anything is sent.
@dataclass(slots=True)
class Enqueue:
    """One job for :meth:`BackfillClient.enqueue_many`; the fields mean what :meth:`~BackfillClient.enqueue`'s
    arguments mean."""

    task: str
    payload: Any = None
    priority: int | None = None
    queue: str | None = None
    lane: str | None = None
    run_at: datetime | None = None
    delay: float | timedelta | None = None
    job_key: str | None = None
    max_attempts: int | None = None
    retry_policy: RetryPolicy | str | None = None
    flags: Sequence[str] | None = None
    timeout: float | None = None
    keep_result: float | timedelta | None = None


class BackfillClient:
    """Enqueues jobs into one Graphile schema. Accepts a DSN (the client then owns a small pool, opened on
    first use and closed by :meth:`close` or ``async with``) or a pool of yours (never closed here).

    ``max_payload_bytes`` (default 1 MiB, ``BACKFILL_MAX_PAYLOAD_BYTES`` in :meth:`from_env`; 0: no limit)
    refuses larger payloads, as JSON, with :class:`~backfill.core.errors.PayloadTooLargeError` before anything
    is written (see :mod:`backfill.client.payload_limit` for why)."""

    def __init__(
        self,
        database: str | asyncpg.Pool[Any],
        *,
        schema: str | SchemaName | None = None,
        default_retry_policy: RetryPolicy | str = "default",
        default_priority: int = Priority.BULK_DEFAULT,
        metrics: EnqueueObserver | None = None,
        max_pool_size: int = 5,
        prepared_statements: bool = True,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        if not isinstance(database, (str, asyncpg.Pool)):
            raise ConfigurationError("database must be a DSN string or an asyncpg.Pool")
        self.schema = SchemaName.coerce(schema)
        self.default_retry_policy = resolve_policy(default_retry_policy, field_name="default_retry_policy")
        self.default_priority = _priority("default_priority", default_priority)
        self._metrics = metrics
        self.max_payload_bytes = check_limit(max_payload_bytes)
        # prepared_statements off behind PgBouncer in transaction mode (for a pool the client opens itself).
        self._pool = LazyPool(database, max_size=max_pool_size, prepared_statements=prepared_statements)
        self._catalog = TaskCatalog(self.schema)
        self._lanes = LaneCatalog(self.schema)
        self._outcomes = OutcomeReader(self._get_pool, self.schema, self.task_defaults)
        self._waiter = OutcomeWaiter(self._get_pool)

    @classmethod
    def from_env(cls, **options: Any) -> BackfillClient:
        """A client for ``DATABASE_URL``, ``GRAPHILE_WORKER_SCHEMA``, ``BACKFILL_DEFAULT_RETRY_POLICY`` and
        ``BACKFILL_MAX_PAYLOAD_BYTES`` (from the environment or ``.env``); ``options`` as for the constructor."""
        from backfill.settings import ClientSettings  # the settings module imports the layer's pieces

        # Only what a client reads is validated: a bad worker variable in a shared environment is the
        # runner's to report, not a reason for a web process to stop enqueueing.
        settings = ClientSettings.load()
        if not settings.database_url:
            raise ConfigurationError("DATABASE_URL: not set; it must name the PostgreSQL database to enqueue into")
        options.setdefault("schema", settings.schema_name)
        options.setdefault("default_retry_policy", settings.default_retry_policy)
        options.setdefault("prepared_statements", settings.prepared_statements)
        options.setdefault("max_payload_bytes", settings.max_payload_bytes)
        return cls(settings.database_url, **options)

    # -- enqueueing -----------------------------------------------------------------------------------------

    async def enqueue(
        self,
        task: str,
        payload: Any = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        lane: str | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        job_key: str | None = None,
        job_key_mode: JobKeyMode | str | None = None,
        max_attempts: int | None = None,
        retry_policy: RetryPolicy | str | None = None,
        flags: Sequence[str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's timeout, not this call's
        keep_result: float | timedelta | None = None,
        connection: ConnectionSource | None = None,
    ) -> Job:
        """Enqueue one job and return its row.

        * ``priority`` — lower runs first (:class:`~backfill.priorities.Priority` or any smallint); negative
          priorities go to the Fast lane, others to the Bulk lane.
        * ``queue`` — a serial queue: its jobs run one at a time across all workers (e.g. per customer).
        * ``lane`` — a custom lane (configured on workers with ``BACKFILL_LANES``) with its own concurrency.
        * ``run_at`` or ``delay`` (seconds or timedelta from now) — when the job becomes runnable.
        * ``job_key`` / ``job_key_mode`` — Graphile's deduplication (``replace`` by default).
        * ``retry_policy`` — a preset name (``fast``, ``aggressive``, ``conservative``, ``default``,
          ``graphile``) or a :class:`~backfill.tasks.retry_policies.RetryPolicy`; ``max_attempts`` overrides its
          attempts.
        * ``keep_result`` — keep the job's outcome and return value this long (seconds or a timedelta) after it
          ends, for :meth:`result` and :meth:`wait`; by default the task's ``keep_result``, if any.
        * ``connection`` — enqueue on this connection (inside its transaction, if one is open).
        """
        request = Enqueue(
            task,
            payload,
            priority,
            queue,
            lane,
            run_at,
            delay,
            job_key,
            max_attempts,
            retry_policy,
            flags,
            timeout,
            keep_result,
        )
        spec = self.build_spec(request, await self.task_defaults(task))
        await self.warn_if_lane_undeclared(spec)
        job = await add_job_spec(
            connection if connection is not None else await self._get_pool(),
            spec,
            job_key_mode=job_key_mode,
            schema=self.schema,
        )
        if self._metrics is not None:
            self._metrics.job_enqueued(job.task_identifier, job.priority, spec.flags)
        return job

    async def enqueue_fast(self, task: str, payload: Any = None, **options: Any) -> Job:
        """:meth:`enqueue` at ``Priority.FAST_DEFAULT`` unless ``priority`` says otherwise."""
        options.setdefault("priority", Priority.FAST_DEFAULT)
        return await self.enqueue(task, payload, **options)

    async def enqueue_bulk(self, task: str, payload: Any = None, **options: Any) -> Job:
        """:meth:`enqueue` at ``Priority.BULK_DEFAULT`` unless ``priority`` says otherwise."""
        options.setdefault("priority", Priority.BULK_DEFAULT)
        return await self.enqueue(task, payload, **options)

    async def enqueue_critical(self, task: str, payload: Any = None, **options: Any) -> Job:
        """:meth:`enqueue` at ``Priority.EMERGENCY``: ahead of everything else in the Fast lane."""
        options.setdefault("priority", Priority.EMERGENCY)
        return await self.enqueue(task, payload, **options)

    @overload
    async def enqueue_many(
        self,
        requests: Sequence[Enqueue],
        *,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: Literal[True] = True,
    ) -> list[Job]: ...

    @overload
    async def enqueue_many(
        self,
        requests: Sequence[Enqueue],
        *,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: Literal[False],
    ) -> int: ...

    async def enqueue_many(
        self,
        requests: Sequence[Enqueue],
        *,
        job_key_preserve_run_at: bool = False,
        connection: ConnectionSource | None = None,
        returning: bool = True,
    ) -> list[Job] | int:
        """Enqueue many jobs in one statement (one round trip, one notification). A bad request is reported
        by its position before anything is written. Returns the jobs written, or with ``returning=False`` only
        how many (the rows are then neither sent back nor decoded: see ``backfill.core.add_jobs``)."""
        specs = await self._specs_of(requests)
        # Specs of one shape share one flags tuple: look at each distinct one, not at every spec.
        by_flags = {spec.flags: spec for spec in specs}.values()
        for spec in {lane_of(0, spec.flags): spec for spec in by_flags}.values():
            await self.warn_if_lane_undeclared(spec)
        written = await add_jobs(
            connection if connection is not None else await self._get_pool(),
            specs,
            job_key_preserve_run_at=job_key_preserve_run_at,
            schema=self.schema,
            returning=returning,
        )
        if self._metrics is not None:
            # One call per series, not per job: each call takes the counter's lock.
            counts = Counter((spec.identifier, spec.priority or 0, spec.flags) for spec in specs)
            for (task, priority, flags), count in counts.items():
                self._metrics.job_enqueued(task, priority, flags, count)
        return written

    async def _specs_of(self, requests: Sequence[Enqueue]) -> list[JobSpec]:
        """:meth:`build_spec` for each request, errors named by position.

        Requests that differ only in payload, time and key (a bulk enqueue of one task, typically) share
        everything else build_spec works out — defaults, policy, flags — so it runs once per shape, and each
        further request of that shape has only its own fields checked (:meth:`JobSpec.with_job`)."""
        specs = []
        known: dict[str, TaskDefaults | None] = {}
        specs_by_shape: dict[tuple[Any, ...], JobSpec] = {}
        for position, request in enumerate(requests):
            if not isinstance(request, Enqueue):
                raise JobSpecError(f"requests[{position}]", f"must be an Enqueue, not {type(request).__name__}")
            shape = _shape_of(request)
            like = specs_by_shape.get(shape) if shape is not None else None
            try:
                if like is not None:
                    payload = request.payload
                    if request.task in PAYLOAD_CHECKS:  # a task with a payload type, declared in this process
                        payload = checked_payload(request.task, payload)
                    spec = like.with_job(payload, _run_at(request.run_at, request.delay), request.job_key)
                    enforce_limit(spec.identifier, spec.payload_json, self.max_payload_bytes)
                else:
                    if isinstance(request.task, str) and request.task not in known:
                        known[request.task] = await self.task_defaults(request.task)
                    defaults = known.get(request.task) if isinstance(request.task, str) else None
                    spec = self.build_spec(request, defaults)
                    if shape is not None:
                        specs_by_shape[shape] = spec
            except PayloadTooLargeError as error:
                raise error.at(f"requests[{position}].payload") from None
            except JobSpecError as error:
                raise JobSpecError(f"requests[{position}].{error.field}", str(error).partition(": ")[2]) from None
            specs.append(spec)
        return specs

    async def task_defaults(self, task: str) -> TaskDefaults | None:
        """``task``'s defaults: this process's (``@backfill.task``) or, for a task it never imported, those a
        worker runner published in the database (cached; see :mod:`backfill.tasks.catalog`)."""
        if not isinstance(task, str) or not task:
            return None  # build_spec reports the bad identifier
        # This process's own need no database (nor a pool opened, for callers passing connection=).
        return await self._catalog.known_defaults(self._get_pool, task)

    async def warn_if_lane_undeclared(self, spec: JobSpec) -> None:
        """Warn, once per lane, when ``spec`` goes to a custom lane that no runner has ever declared: the job
        waits until a runner serves it (see :mod:`backfill.lanes.catalog`). The job is enqueued all the same."""
        lane = lane_of(0, spec.flags)
        if lane not in BUILT_IN_LANES:
            await self._lanes.warn_if_undeclared(await self._get_pool(), lane)

    def build_spec(self, request: Enqueue, defaults: TaskDefaults | None = None) -> JobSpec:
        """The core job spec for ``request``: ``defaults`` (the task's, from :meth:`task_defaults`; this
        process's own when not given), then the client's, under the request's own arguments."""
        check_name("task", request.task, error=JobSpecError)
        if defaults is None:
            defaults = defaults_for(request.task)
        priority = request.priority
        if priority is None:
            priority = defaults.priority if defaults is not None and defaults.priority is not None else None
        priority = _priority("priority", priority if priority is not None else self.default_priority)
        queue = request.queue if request.queue is not None else (defaults.queue if defaults is not None else None)
        lane = request.lane if request.lane is not None else (defaults.lane if defaults is not None else None)
        if request.retry_policy is not None:
            try:
                policy = resolve_policy(request.retry_policy)
            except ConfigurationError as error:
                raise JobSpecError("retry_policy", str(error).partition(": ")[2]) from None
        elif defaults is not None and defaults.retry_policy is not None:
            policy = defaults.retry_policy
        else:
            policy = self.default_retry_policy
        if request.flags is not None and (
            isinstance(request.flags, (str, bytes)) or not all(isinstance(f, str) for f in request.flags)
        ):
            raise JobSpecError("flags", "must be a list of strings")
        # A retry flag given by hand would contradict the policy chosen here; the policy wins.
        flags = list(without_values(request.flags, RETRY))
        flags.append(policy.flag)
        if lane is not None:
            flags.extend(lane_flags(lane))
        spec = JobSpec(
            request.task,
            checked_payload(request.task, request.payload),  # validated when this process knows its payload type
            queue_name=queue,
            run_at=_run_at(request.run_at, request.delay),
            max_attempts=request.max_attempts if request.max_attempts is not None else policy.max_attempts,
            job_key=request.job_key,
            priority=priority,
            flags=flags,
            timeout=request.timeout,
            keep_result=request.keep_result
            if request.keep_result is not None
            else (defaults.keep_result if defaults is not None else None),
        )
        enforce_limit(spec.identifier, spec.payload_json, self.max_payload_bytes)
        return spec

    # -- operator controls (backfill.control) ---------------------------------------------------------------

    async def pause(
        self,
        *,
        lane: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        by: str = "python",
        reason: str | None = None,
    ) -> Pause:
        """Pause one lane, named queue or task fleet-wide: every backfill runner stops starting its jobs within
        about a second (running ones finish; the work stays queued) until :meth:`resume`."""
        return await control.pause(
            await self._get_pool(), self.schema, lane=lane, queue=queue, task=task, by=by, reason=reason
        )

    async def resume(
        self, *, lane: str | None = None, queue: str | None = None, task: str | None = None
    ) -> Pause | None:
        """Lift a pause; the pause lifted, ``None`` when that was not paused."""
        return await control.resume(await self._get_pool(), self.schema, lane=lane, queue=queue, task=task)

    async def pauses(self) -> list[Pause]:
        """The pauses in force."""
        return await control.list_pauses(await self._get_pool(), self.schema)

    async def cancel(
        self, job_ids: Sequence[int], *, by: str = "python", reason: str | None = None
    ) -> list[CancelResult]:
        """Cancel jobs, queued (they never run) or running (their worker cancels the handler); one answer per
        distinct id (see :class:`~backfill.control.CancelOutcome`). Never retried, never dead-lettered."""
        return await control.cancel_jobs(await self._get_pool(), self.schema, job_ids, by=by, reason=reason)

    async def cancellations(
        self, job_ids: Sequence[int] | None = None, *, state: str | None = None, limit: int = 100
    ) -> list[Cancellation]:
        """Cancellations of ``job_ids``, or the most recent ones: who asked, when, why, and how it ended."""
        return await control.cancellations(
            await self._get_pool(), self.schema, job_ids=job_ids, state=state, limit=limit
        )

    # -- outcomes (backfill.results) ----------------------------------------------------------------------------

    async def result(self, job: int | Job) -> JobOutcome | None:
        """How ``job`` (an id or a Job) ended: a :class:`~backfill.results.JobOutcome` once it has succeeded,
        failed for good or been cancelled; ``None`` while it is queued or running.

        Only jobs that keep their outcome have one after their row is gone (``keep_result=`` at enqueue, or on
        the task). Raises :class:`~backfill.core.errors.ResultUnavailableError` when none is kept and none will
        be: the job never existed, keeps nothing, or its retention has passed."""
        return await self._outcomes.outcome(as_job_id(job))

    async def wait(
        self,
        job: int | Job,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's bound, raised as ResultTimeoutError
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> JobOutcome:
        """Wait until ``job`` has ended and return its outcome (see :meth:`result`); woken by the worker's
        notification, with a read every ``poll_interval`` seconds as a safety net. Raises
        :class:`~backfill.core.errors.ResultTimeoutError` after ``timeout`` seconds (``None``: no limit), and
        :class:`~backfill.core.errors.ResultUnavailableError` at once for a job that will keep no outcome.
        ``outcome.unwrap()`` gives the return value, or raises for a failure."""
        job_id = as_job_id(job)
        if timeout is not None:
            check_number("timeout", timeout, at_least=0, must="a number of seconds >= 0, or None", error=JobSpecError)
        check_number("poll_interval", poll_interval, above=0, must="a number of seconds > 0", error=JobSpecError)
        return await self._waiter.wait(
            job_id, lambda: self._outcomes.outcome(job_id), timeout=timeout, poll_interval=poll_interval
        )

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def migrate(self) -> None:
        """Install or upgrade everything enqueueing and the worker need: Graphile's schema (revision 20) and
        backfill's own tables (worker registry, error history, dead-letter queue, task catalog). Idempotent; a
        worker runner does it at start-up too, so call it only where enqueueing may come first. The core's
        ``WorkerUtils.migrate()`` installs less: not the dead-letter table nor the task catalog."""
        await migrate_all(await self._get_pool(), self.schema)

    async def _get_pool(self) -> asyncpg.Pool[Any]:
        return await self._pool.get()

    async def close(self) -> None:
        """Close the pool the client opened (a pool passed in is left open)."""
        await self._waiter.close()
        await self._pool.close()

    async def __aenter__(self) -> BackfillClient:
        await self._get_pool()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _priority(field_name: str, value: Any) -> int:
    if not is_int(value):
        raise JobSpecError(field_name, f"must be an integer (a Priority or any smallint), not {type(value).__name__}")
    return int(value)


def _shape_of(request: Enqueue) -> tuple[Any, ...] | None:
    """What of ``request`` decides its spec's fields other than payload, run_at and job_key; ``None`` when it
    cannot serve as a key (unhashable values, flags that are not a list or tuple: build_spec reports those).

    Types are part of the key: ``True == 1`` and ``1.0 == 1`` would otherwise let a bool priority or a float
    max_attempts reuse the spec of a valid int one, skipping the check that refuses it."""
    flags = request.flags
    if flags is not None:
        if type(flags) is not list and type(flags) is not tuple:
            return None
        flags = tuple(flags)
    shape = (
        request.task,
        request.priority,
        type(request.priority),
        request.queue,
        request.lane,
        request.retry_policy,
        request.max_attempts,
        type(request.max_attempts),
        flags,
        request.timeout,
        type(request.timeout),
        request.keep_result,
        type(request.keep_result),
    )
    try:
        hash(shape)
    except TypeError:
        return None
    return shape


def _run_at(run_at: datetime | None, delay: float | timedelta | None) -> datetime | None:
    if delay is None:
        return run_at
    if run_at is not None:
        raise JobSpecError("delay", "give run_at or delay, not both")
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif is_number(delay):
        seconds = float(delay)
    else:
        raise JobSpecError("delay", f"must be seconds or a timedelta, not {type(delay).__name__}")
    if not seconds >= 0:  # also refuses NaN
        raise JobSpecError("delay", f"must not be negative, got {delay!r}")
    return datetime.now(UTC) + timedelta(seconds=seconds)


def with_layer_defaults(spec: JobSpec, defaults: TaskDefaults | None, default_policy: RetryPolicy) -> JobSpec:
    """``spec`` (from the core: ``ctx.add_job``, cron) with what the client would have given it: the task's
    priority, queue and lane when the spec has none, and a retry policy (the task's, else ``default_policy``)
    when it carries no ``backfill:retry=`` flag. Explicit values in the spec are kept."""
    flags = list(spec.flags or ())
    changes: dict[str, Any] = {}
    if defaults is not None:
        if spec.priority is None and defaults.priority is not None:
            changes["priority"] = defaults.priority
        if spec.queue_name is None and defaults.queue is not None:
            changes["queue_name"] = defaults.queue
        if defaults.lane is not None and not is_set(flags, LANE):
            flags.extend(lane_flags(defaults.lane))
        if defaults.keep_result is not None and value_of(flags, RESULT_FLAG) is None:
            flags.append(result_flag(defaults.keep_result))
    if value_of(flags, RETRY) is None:
        policy = defaults.retry_policy if defaults is not None and defaults.retry_policy is not None else default_policy
        flags.append(policy.flag)
        if spec.max_attempts is None:
            changes["max_attempts"] = policy.max_attempts
    if flags != list(spec.flags or ()):
        changes["flags"] = flags
    if not changes:
        return spec
    # The timeout and the retention already live in the flags; passing them again would only rewrite the flags.
    return dataclasses.replace(spec, timeout=None, keep_result=None, **changes)
