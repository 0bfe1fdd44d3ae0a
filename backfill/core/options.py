"""Worker options and the summary a run returns."""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from backfill.core.errors import ConfigurationError
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
    """How a :class:`~backfill.core.worker.Worker` runs. Every field is validated at construction.

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
    * ``shutdown_grace_period`` — seconds running jobs get to finish after a stop is requested; jobs still
      running then are cancelled and failed with an "interrupted" error, retried after
      ``interrupted_retry_delay`` seconds (the attempt counts, so a job that never fits the grace period
      cannot cycle forever).
    * ``handle_signals`` — install SIGINT/SIGTERM handlers (first: graceful stop; second: stop now).
    * ``max_pool_size`` — size of the pool the worker creates from a DSN; handlers share it via ``ctx``.
    """

    schema: str | SchemaName | None = None
    concurrency: int = 10
    poll_interval: float = 2.0
    local_queue_size: int = 1000
    lookahead: float = 0.1
    prepared_statements: bool = True
    forbidden_flags: Sequence[str] = ()
    shutdown_grace_period: float = 30.0
    interrupted_retry_delay: float = 0.0
    handle_signals: bool = False
    max_pool_size: int = 10
    # Graphile releases locks older than 4 hours every 8-10 minutes (jittered so workers do not align).
    stale_lock_check_interval: tuple[float, float] = (480.0, 600.0)
    worker_id: str = field(default_factory=new_worker_id)

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
        if isinstance(self.forbidden_flags, str) or not all(isinstance(f, str) for f in self.forbidden_flags):
            raise ConfigurationError("forbidden_flags must be a list of strings")
        object.__setattr__(self, "forbidden_flags", tuple(self.forbidden_flags))
        if not isinstance(self.worker_id, str) or not self.worker_id:
            raise ConfigurationError("worker_id must be a non-empty string")

    @property
    def schema_name(self) -> SchemaName:
        assert isinstance(self.schema, SchemaName)  # __post_init__ coerced it
        return self.schema


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")


def _positive_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


def _non_negative_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{name} must be zero or a positive number, got {value!r}")


@dataclass(slots=True)
class RunSummary:
    """What a worker did: counts of job outcomes since it started."""

    succeeded: int = 0
    failed: int = 0  # attempts that failed, permanent or not
    permanently_failed: int = 0  # failures that used up the job's last attempt
    returned: int = 0  # claimed jobs handed back unstarted (shutdown)
    interrupted: int = 0  # running jobs cancelled at the end of the grace period
    lost_leases: int = 0  # results discarded because the job's lock was no longer ours

    @property
    def processed(self) -> int:
        return self.succeeded + self.failed
