"""Worker options and the summary a run returns."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from backfill.core.checks import check_int, check_name, check_number
from backfill.core.errors import ConfigurationError
from backfill.core.run.job_slice import JobSlice
from backfill.core.schema import SchemaName

# Connections a worker holds for its whole run: the fetcher's and the completer's (pinned), plus one the
# listener takes when it must come from a caller's pool. One more keeps handlers (ctx.pool), start-up and
# shutdown statements from waiting forever on a pool the worker itself exhausted.
MIN_OWN_POOL_SIZE = 3
MIN_CALLER_POOL_SIZE = 4


def new_worker_id() -> str:
    """A pool id unique across processes and hosts: it is what ``locked_by`` says, so it must never repeat."""
    return f"backfill-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a :class:`~backfill.core.run.worker.Worker` runs. Every field is validated at construction.

    * ``concurrency`` — handlers running at once.
    * ``poll_interval`` — seconds between polls when no notification arrives (the safety net for jobs
      inserted without NOTIFY, for run_at in the future, and for notifications lost in an outage).
    * ``local_queue_size`` — the most jobs held claimed but not yet started. The worker keeps about
      ``lookahead`` seconds of work queued (measured from its recent throughput), so no-op jobs are fetched
      hundreds at a time while slow jobs are fetched a slot at a time and stay available to other workers.
      1000 rather than Node's customary 500: draining no-op jobs measured about 20% faster with it here
      (median of 3 runs of 50,000 jobs), and the lookahead keeps it from mattering for slower jobs.
    * ``prepared_statements`` — off for PgBouncer in transaction mode (disables asyncpg's statement cache on
      the pool the worker creates; a pool you pass in keeps its own settings).
    * ``forbidden_flags`` — jobs carrying any of these flags are not fetched.
    * ``required_flags`` — when given, only jobs carrying at least one of these flags are fetched.
    * ``min_priority`` / ``max_priority`` — when given, only jobs whose priority lies within these inclusive
      bounds are fetched. With the flags, this is what gives a lane of jobs its own worker and concurrency;
      the four together are :attr:`job_slice` (a :class:`~backfill.core.run.job_slice.JobSlice`).
    * ``upkeep`` — run the shared upkeep (stale-lock release, dead-worker sweeper, cron). Several workers in
      one process (one per lane) need it only once; the heartbeat and loop monitor run regardless.
    * ``shutdown_grace_period`` — seconds running jobs get to finish after a stop is requested; jobs still
      running then are cancelled and failed with an "interrupted" error, retried after
      ``interrupted_retry_delay`` seconds (the attempt counts, so a job that never fits the grace period
      cannot cycle forever).
    * ``handle_signals`` — install SIGINT/SIGTERM handlers (first: graceful stop; second: stop now).
    * ``max_pool_size`` — size of the pool the worker creates from a DSN; handlers share it via ``ctx``.
    * ``heartbeat_interval`` — seconds between this worker's heartbeats in ``backfill_workers``.
    * ``dead_worker_after`` — a worker whose last heartbeat is older than this is declared dead by a sweeper,
      which releases its jobs (attempt refunded) and queue locks. Each worker declares its own value, so
      workers with different settings are each judged by theirs. Keep it several heartbeats long: a worker
      declared dead while alive only loses its results (they are fenced), but its jobs run twice.
    * ``sweep_interval`` — (low, high) seconds between sweeps for dead workers, jittered; one sweep at a time
      runs across all workers (advisory lock), so many workers do not multiply the work.
    * ``max_recoveries`` — a job rescued from this many dead workers and then found in a dead worker again is
      failed permanently as a probable poison pill instead of being released once more.
    * ``cancel_grace_period`` — seconds a handler gets to react to cancellation (a timeout, or the end of the
      shutdown grace period) before it is reported as stuck and its slot given up.
    * ``loop_block_threshold`` — the event loop stalled this many seconds (a handler doing blocking work in an
      ``async def``) is reported with the stack that blocked it; ``None`` turns the watchdog off.
    * ``lane`` — a name for the slice of jobs this worker fetches, recorded with its heartbeat row (and shown
      by ``backfill workers``); backfill's runner gives each of its workers its lane's name.
    """

    schema: str | SchemaName | None = None
    concurrency: int = 10
    poll_interval: float = 2.0
    local_queue_size: int = 1000
    lookahead: float = 0.1
    prepared_statements: bool = True
    forbidden_flags: Sequence[str] = ()
    required_flags: Sequence[str] = ()
    min_priority: int | None = None
    max_priority: int | None = None
    upkeep: bool = True
    shutdown_grace_period: float = 30.0
    interrupted_retry_delay: float = 0.0
    handle_signals: bool = False
    max_pool_size: int = 10
    # Graphile releases locks older than 4 hours every 8-10 minutes (jittered so workers do not align).
    stale_lock_check_interval: tuple[float, float] = (480.0, 600.0)
    # A dead worker's jobs are back in about dead_worker_after + one sweep interval: 15-19 s by default.
    # Two seconds between heartbeats is one cheap UPDATE per worker; fifteen tolerates ~7 missed beats
    # (a long GC pause, a slow database) before anyone calls the worker dead.
    heartbeat_interval: float = 2.0
    dead_worker_after: float = 15.0
    sweep_interval: tuple[float, float] = (2.0, 4.0)
    max_recoveries: int = 3
    cancel_grace_period: float = 1.0
    loop_block_threshold: float | None = 1.0
    worker_id: str = field(default_factory=new_worker_id)
    lane: str | None = None
    # min_priority, max_priority and the flags above as one value, what the fetch is composed from. Derived,
    # not an argument, so that dataclasses.replace() of any of the four cannot leave it behind.
    job_slice: JobSlice = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", SchemaName.coerce(self.schema))
        _positive_int("concurrency", self.concurrency)
        _positive_int("local_queue_size", self.local_queue_size)
        _positive_int("max_pool_size", self.max_pool_size)
        if self.max_pool_size < MIN_OWN_POOL_SIZE:
            raise ConfigurationError(
                f"max_pool_size must be at least {MIN_OWN_POOL_SIZE} (the fetcher and the completer each hold "
                f"a connection, and handlers and shutdown need one more), got {self.max_pool_size}"
            )
        _positive_number("poll_interval", self.poll_interval)
        _non_negative_number("lookahead", self.lookahead)
        _non_negative_number("shutdown_grace_period", self.shutdown_grace_period)
        _non_negative_number("interrupted_retry_delay", self.interrupted_retry_delay)
        low, high = self.stale_lock_check_interval
        if not 0 < low <= high:
            raise ConfigurationError("stale_lock_check_interval must be (low, high) with 0 < low <= high")
        _positive_number("heartbeat_interval", self.heartbeat_interval)
        _positive_number("dead_worker_after", self.dead_worker_after)
        if self.dead_worker_after < 2 * self.heartbeat_interval:
            raise ConfigurationError(
                f"dead_worker_after ({self.dead_worker_after}) must be at least twice heartbeat_interval "
                f"({self.heartbeat_interval}), or live workers would be declared dead between two heartbeats"
            )
        low, high = self.sweep_interval
        if not 0 < low <= high:
            raise ConfigurationError("sweep_interval must be (low, high) with 0 < low <= high")
        _positive_int("max_recoveries", self.max_recoveries)
        _non_negative_number("cancel_grace_period", self.cancel_grace_period)
        if self.loop_block_threshold is not None:
            _positive_number("loop_block_threshold", self.loop_block_threshold)
        check_name("lane", self.lane, 64, must="a name of 1 to 64 characters", optional=True)
        job_slice = JobSlice(self.min_priority, self.max_priority, self.forbidden_flags, self.required_flags)
        object.__setattr__(self, "job_slice", job_slice)
        object.__setattr__(self, "forbidden_flags", job_slice.forbidden_flags)
        object.__setattr__(self, "required_flags", job_slice.required_flags)
        check_name("worker_id", self.worker_id)

    @property
    def schema_name(self) -> SchemaName:
        assert isinstance(self.schema, SchemaName)  # __post_init__ coerced it
        return self.schema


def _positive_int(name: str, value: object) -> None:
    check_int(name, value, 1, must="a positive integer")


def _positive_number(name: str, value: object) -> None:
    check_number(name, value, above=0, must="a positive number of seconds")


def _non_negative_number(name: str, value: object) -> None:
    check_number(name, value, at_least=0, must="zero or a positive number")


@dataclass(slots=True)
class RunSummary:
    """What a worker did: counts of job outcomes since it started."""

    succeeded: int = 0
    failed: int = 0  # attempts that failed, permanent or not
    permanently_failed: int = 0  # failures that used up the job's last attempt
    returned: int = 0  # claimed jobs handed back unstarted (shutdown)
    interrupted: int = 0  # running jobs cancelled at the end of the grace period
    lost_leases: int = 0  # results discarded because the job's lock was no longer ours
    timed_out: int = 0  # attempts cancelled at their deadline (also counted in failed)
    skipped: int = 0  # jobs an interceptor completed without running their handler
    forfeited: int = 0  # claimed jobs dropped unstarted because the worker's claims were taken from it
    cancelled: int = 0  # jobs an operator cancelled while this worker held them (running or claimed)

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed
