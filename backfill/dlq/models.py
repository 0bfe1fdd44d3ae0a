"""What the dead-letter queue hands out: entries, their errors, filters, pages, requeue results and figures.

Values only, no SQL. Every type is immutable; the ones read from a row are built by ``from_record``, which
accepts json/jsonb columns as text (no codec on the pool) or already decoded (a caller's codec).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from backfill.core import ConfigurationError
from backfill.core.extension import (
    check_aware,
    check_name,
    decode_json,
    parse_flags,
    per_flag_set,
    register_flag,
    values_of,
)

# The flag a requeued job carries: backfill:dlq=<entry id>. When that job dies again it goes back to the
# same entry; when it succeeds the entry is deleted. The prefix by name for the SQL that needs it.
DLQ = register_flag("dlq", owner=__name__)
DLQ_FLAG_PREFIX = DLQ.prefix
# The longest exception type a filter takes (the admin API's bound on a filter's text; a dotted Python name is
# far shorter).
MAX_EXCEPTION_TYPE = 1000


@per_flag_set  # asked of every job a runner completes, by the mover
def entry_id_of(flags: frozenset[str]) -> int | None:
    """The entry a requeued job came from (its ``backfill:dlq=<id>`` flag), ``None`` for any other job."""
    for digits in values_of(flags, DLQ):
        # The same shape the move statement accepts: a hand-written flag that is not an id is ignored.
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(digits)
    return None


class EntryState(StrEnum):
    """``dead``: waiting for triage. ``requeued``: a job made from it is live (``requeued_job_id``)."""

    DEAD = "dead"
    REQUEUED = "requeued"


class Reason(StrEnum):
    """Why the job died: its last error was permanent (the handler or the poison-pill sweep said so), or it
    used up ``max_attempts``."""

    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    PERMANENT_FAILURE = "permanent_failure"


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One failed attempt. ``permanent`` is ``None`` for an attempt a Node worker made (it does not say), and
    ``failed_at`` is then the job row's ``updated_at``, a lower bound."""

    attempt: int
    error: str | None
    failed_at: datetime | None
    permanent: bool | None
    job_id: int | None
    # "KeyError", "myapp.errors.Upstream"; None for an attempt of a Node worker, or recorded before it was kept.
    exception_type: str | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ErrorRecord:
        failed_at = item.get("failed_at")
        return cls(
            attempt=int(item["attempt"]),
            error=item.get("error"),
            failed_at=datetime.fromisoformat(failed_at) if isinstance(failed_at, str) else None,
            permanent=item.get("permanent"),
            job_id=item.get("job_id"),
            exception_type=item.get("exception_type"),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterEntry:
    """A row of ``backfill_dlq``: a dead job, every error it had, and what triage did with it."""

    id: int
    job_id: int
    task_identifier: str
    payload: Any
    queue_name: str | None
    priority: int
    job_key: str | None
    flags: frozenset[str]
    attempts: int
    max_attempts: int
    errors: tuple[ErrorRecord, ...]
    last_error: str | None
    reason: Reason
    created_at: datetime
    run_at: datetime
    failed_at: datetime
    requeue_count: int
    requeued_at: datetime | None
    requeued_job_id: int | None
    state: EntryState
    notes: str | None
    updated_at: datetime
    # The last attempt's exception type and traceback (at most 8 KiB, its tail), when a backfill worker made it.
    exception_type: str | None = None
    traceback: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> DeadLetterEntry:
        errors = decode_json(record["errors"]) or []
        return cls(
            id=record["id"],
            job_id=record["job_id"],
            task_identifier=record["task_identifier"],
            payload=decode_json(record["payload"]),
            queue_name=record["queue_name"],
            priority=record["priority"],
            job_key=record["job_key"],
            flags=parse_flags(record["flags"]),
            attempts=record["attempts"],
            max_attempts=record["max_attempts"],
            errors=tuple(ErrorRecord.from_json(item) for item in errors),
            last_error=record["last_error"],
            reason=Reason(record["reason"]),
            created_at=record["created_at"],
            run_at=record["run_at"],
            failed_at=record["failed_at"],
            requeue_count=record["requeue_count"],
            requeued_at=record["requeued_at"],
            requeued_job_id=record["requeued_job_id"],
            state=EntryState(record["state"]),
            notes=record["notes"],
            updated_at=record["updated_at"],
            exception_type=record.get("exception_type"),
            traceback=record.get("traceback"),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which entries: every field given must hold (``None`` matches anything).

    ``since``/``until`` bound ``failed_at`` (``since <= failed_at < until``); ``error`` is a case-insensitive
    substring of any of the entry's errors; ``exception_type`` is the last attempt's exception type, exactly
    (case-sensitive, as Python names it: ``KeyError``, ``myapp.errors.Upstream``). Entries with no recorded type
    (``"(unknown)"`` in the stats: a Node worker's) are never matched by it: leave it out to include them.
    """

    task: str | None = None
    queue: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = None
    state: EntryState | str | None = None  # a string is checked and turned into an EntryState
    exception_type: str | None = None

    def __post_init__(self) -> None:
        for name in ("task", "queue", "error"):
            value = getattr(self, name)
            check_name(f"filter {name}", value, must="a non-empty string", optional=True)
        check_name(
            "filter exception_type",
            self.exception_type,
            MAX_EXCEPTION_TYPE,
            must=f"a non-empty string of at most {MAX_EXCEPTION_TYPE} characters",
            optional=True,
        )
        if self.exception_type is not None and "\x00" in self.exception_type:
            raise ConfigurationError("filter exception_type must not contain NUL characters")
        for name in ("since", "until"):
            value = getattr(self, name)
            check_aware(f"filter {name}", value, must="a timezone-aware datetime", optional=True)
        if self.state is not None:
            try:
                object.__setattr__(self, "state", EntryState(self.state))
            except ValueError:
                known = ", ".join(state.value for state in EntryState)
                raise ConfigurationError(f"filter state must be one of {known}, got {self.state!r}") from None

    @property
    def is_empty(self) -> bool:
        """Matches every entry: acting on it needs ``all=True``."""
        return all(getattr(self, name) is None for name in _FILTER_FIELDS)


_FILTER_FIELDS = ("task", "queue", "since", "until", "error", "state", "exception_type")


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """One page of :meth:`DeadLetterQueue.list`; pass ``next_cursor`` as ``after`` for the next (``None``: last)."""

    entries: tuple[DeadLetterEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Requeued:
    """An entry requeued (or, in a dry run, that would be): the job it became (``None`` in a dry run)."""

    entry_id: int
    job_id: int | None
    task_identifier: str
    queue_name: str | None
    priority: int
    max_attempts: int
    run_at: datetime | None
    job_key: str | None


@dataclass(frozen=True, slots=True)
class Skipped:
    """An entry that was asked for and not acted on, and why."""

    entry_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class RequeueResult:
    """What :meth:`DeadLetterQueue.requeue` did (with ``dry_run``: would do, nothing was changed)."""

    requeued: tuple[Requeued, ...]
    skipped: tuple[Skipped, ...]
    dry_run: bool


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What :meth:`DeadLetterQueue.delete` deleted (with ``dry_run``: would delete)."""

    deleted: tuple[int, ...]
    missing: tuple[int, ...]
    dry_run: bool


@dataclass(frozen=True, slots=True)
class CountBy:
    """How many entries share one value (a task, a reason, an error's first line)."""

    value: str
    count: int


@dataclass(frozen=True, slots=True)
class DeadLetterStats:
    """The dead-letter queue at a glance. ``top_errors`` groups entries by the first line of their last error
    (cut to 200 characters), most frequent first; ``by_exception_type`` by the last attempt's exception type
    (``"(unknown)"`` for an attempt that did not record one: a Node worker's)."""

    total: int
    dead: int
    requeued: int
    oldest_failed_at: datetime | None
    newest_failed_at: datetime | None
    by_task: tuple[CountBy, ...]
    by_reason: tuple[CountBy, ...]
    top_errors: tuple[CountBy, ...]
    by_exception_type: tuple[CountBy, ...] = ()


@dataclass(frozen=True, slots=True)
class MovedJob:
    """A job the mover took out of the jobs table, as handed to ``on_moved`` (metrics, logs).

    ``returned``: it was a requeued job that died again and went back to its entry.
    """

    entry_id: int
    job_id: int
    task_identifier: str
    priority: int
    flags: frozenset[str]
    reason: Reason
    returned: bool
