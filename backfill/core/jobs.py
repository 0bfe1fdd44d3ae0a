"""The job row and the job specification, as Python values.

A :class:`JobSpec` is what a caller asks for; it validates every field up front so that a bad spec fails
with an error naming the field instead of a database error halfway through a batch. A :class:`Job` is a
row of ``_private_jobs`` (plus the task identifier and queue name joined in), built by ``from_record``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from json.scanner import make_scanner
from typing import Any, NamedTuple, cast

from backfill.core.checks import SMALLINT_MAX, SMALLINT_MIN, check_aware, check_int, check_name, check_number
from backfill.core.errors import JobSpecError
from backfill.core.flags import SUSPECT, TIMEOUT, parse_flags, value_of, without_values
from backfill.core.statements import Statements

MAX_IDENTIFIER_LENGTH = 128  # tasks_identifier_check / job_queues_queue_name_check
MAX_JOB_KEY_LENGTH = 512  # jobs_key_check

# The core's flags, defined in backfill.core.flags; these names stay for the modules that splice them into SQL.
TIMEOUT_FLAG_PREFIX = TIMEOUT.prefix
SUSPECT_FLAG = SUSPECT.bare
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0


def timeout_flag(seconds: float) -> str:
    """The flag that carries a job's timeout: ``backfill:timeout=<seconds>``."""
    return TIMEOUT.with_value(f"{seconds:g}")


def check_timeout(field_name: str, value: Any) -> float:
    must = f"a number of seconds in (0, {MAX_TIMEOUT_SECONDS:g}]"
    check_number(field_name, value, above=0, at_most=MAX_TIMEOUT_SECONDS, must=must, error=JobSpecError)
    return float(value)


class JobKeyMode(StrEnum):
    """What ``add_job`` does when a job with the same key already exists (see Graphile's docs)."""

    REPLACE = "replace"  # debounce: overwrite the waiting job, run_at included
    PRESERVE_RUN_AT = "preserve_run_at"  # throttle: overwrite all but run_at while never attempted
    UNSAFE_DEDUPE = "unsafe_dedupe"  # keep the existing job untouched, even a running one


def encode_payload(payload: Any, *, field_name: str = "payload") -> str:
    """Serialise a payload to JSON text: ``None`` becomes ``{}``; dicts, lists and pydantic models are accepted.

    Scalars are refused on purpose: Graphile payloads are objects (or arrays, for batch jobs), and a task
    handler receiving ``5`` where it expected a mapping is a bug better caught at enqueue time.
    """
    if payload is None:
        return "{}"
    kind = type(payload)
    if kind is not dict and kind is not list:  # the common cases skip the slower checks below (bulk enqueue)
        dump = getattr(payload, "model_dump", None)
        # A pydantic model, found by duck typing to keep core free of a pydantic import. A model *class* has
        # model_dump too, as an unbound method, and is refused below like any other non-container.
        if callable(dump) and not isinstance(payload, type):
            payload = dump(mode="json")
        if not isinstance(payload, (Mapping, list, tuple)):
            raise JobSpecError(field_name, f"must be a dict, a list or a pydantic model, not {kind.__name__}")
    try:
        return _encode(payload)
    except (TypeError, ValueError) as error:
        raise JobSpecError(field_name, f"is not JSON-serialisable: {error}") from None


# ensure_ascii=False: non-ASCII text is stored as written, not as longer \uXXXX escapes. One encoder
# object, reused, spares json.dumps rebuilding it for every payload.
_encode = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode


def decode_json(value: Any) -> Any:
    """asyncpg returns json/jsonb as text unless a codec was installed; accept either."""
    if isinstance(value, str):
        return json.loads(value)
    return value


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue. Every field but ``identifier`` falls back to Graphile's default when ``None``."""

    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    priority: int | None = None
    flags: Sequence[str] | None = None
    # Seconds the handler may run before it is cancelled; stored as a flag (see backfill.core.flags.TIMEOUT).
    timeout: float | None = None
    # The payload as JSON text, computed once at construction (see __post_init__).
    payload_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.identifier is None:
            raise JobSpecError("identifier", "is required")
        check_name("identifier", self.identifier, MAX_IDENTIFIER_LENGTH, error=JobSpecError)
        check_name("queue_name", self.queue_name, MAX_IDENTIFIER_LENGTH, optional=True, error=JobSpecError)
        check_aware("run_at", self.run_at, optional=True, error=JobSpecError)
        check_int("max_attempts", self.max_attempts, 1, SMALLINT_MAX, optional=True, error=JobSpecError)
        check_int("priority", self.priority, SMALLINT_MIN, SMALLINT_MAX, optional=True, error=JobSpecError)
        if self.job_key is not None and (
            not isinstance(self.job_key, str) or not 1 <= len(self.job_key) <= MAX_JOB_KEY_LENGTH
        ):
            raise JobSpecError("job_key", f"must be a string of 1 to {MAX_JOB_KEY_LENGTH} characters")
        if self.flags is not None:
            # A string is iterable but is one flag, not many; a mapping's values would be silently ignored.
            if isinstance(self.flags, (str, bytes, Mapping)) or not isinstance(self.flags, Iterable):
                raise JobSpecError("flags", "must be a list of strings")
            # Frozen as a tuple first, so a one-shot iterable (a generator) is not used up by the check.
            flags = tuple(self.flags)
            if not all(isinstance(f, str) for f in flags):
                raise JobSpecError("flags", "must be a list of strings")
            object.__setattr__(self, "flags", flags)
        if self.timeout is not None:
            seconds = check_timeout("timeout", self.timeout)
            object.__setattr__(self, "flags", (*without_values(self.flags, TIMEOUT), timeout_flag(seconds)))
        # Serialise now: an unserialisable payload is reported for this spec, not as a failed batch.
        object.__setattr__(self, "payload_json", encode_payload(self.payload))


class JobSql(Statements, file=("backfill.core.sql", "jobs.sql")):
    """Fragments of SQL about job rows that other statement files include (``includes = (JobSql,)``)."""

    job_columns: str  # what Job.from_record reads
    named_job_columns: str  # ... with the task identifier and queue name
    job_name_joins: str
    job_state: str  # JobState's rules
    task_queue_state_filter: str
    job_spec_fields: str  # a JobSpec from the JSON array that enqueue.job_spec_json_fields writes
    available_priorities: str  # what lets "due now" stop at the first job due later, priority by priority


_NO_FLAGS: frozenset[str] = frozenset()


class Job(NamedTuple):
    """A row of ``_private_jobs`` with its task identifier and queue name. Immutable.

    A NamedTuple rather than a frozen dataclass: a worker builds one per job on its hottest path, and a
    frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field) cost 2.3 µs per job against
    0.5 µs here, about 7% of the time a no-op job takes end to end.
    """

    id: int
    task_identifier: str
    payload: Any
    queue_name: str | None
    priority: int
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    key: str | None
    locked_at: datetime | None
    locked_by: str | None
    revision: int
    flags: frozenset[str] = _NO_FLAGS
    task_id: int | None = None
    job_queue_id: int | None = None

    @classmethod
    def from_record(
        cls, record: Mapping[str, Any], *, task_identifier: str | None = None, queue_name: str | None = None
    ) -> Job:
        """Build a job from a row; ``task_identifier``/``queue_name`` fill in for rows that lack them."""
        get = record.get
        payload = get("payload")
        if type(payload) is str:
            payload = _loads(payload)
        flags = get("flags")
        return cls(
            record["id"],
            get("task_identifier") or task_identifier or "",
            payload,
            get("queue_name", queue_name),
            record["priority"],
            record["run_at"],
            record["attempts"],
            record["max_attempts"],
            get("last_error"),
            record["created_at"],
            record["updated_at"],
            get("key"),
            get("locked_at"),
            get("locked_by"),
            get("revision") or 0,
            _NO_FLAGS if flags is None else parse_flags(flags),
            get("task_id"),
            get("job_queue_id"),
        )

    @property
    def timeout(self) -> float | None:
        """The per-job timeout in seconds given at enqueue (``None``: the task's, if any)."""
        text = value_of(self.flags, TIMEOUT)
        if text is None:
            return None
        try:
            seconds = float(text)
        except ValueError:
            return None  # written by hand and unreadable: fall back to the task's timeout
        return seconds if seconds > 0 else None


# typeshed types make_scanner's argument oddly; a JSONDecoder is what the C scanner reads its settings from.
_scan_once: Callable[[str, int], tuple[Any, int]] = make_scanner(cast(Any, json.JSONDecoder()))


def _loads(text: str) -> Any:
    """json.loads without its Python-level whitespace handling, for the compact text PostgreSQL hands back.

    The C scanner parses one value from the start; text with surrounding whitespace (a payload written by
    raw SQL, say) falls back to json.loads. It saves about a microsecond per job on the worker's hot path.
    """
    try:
        value, end = _scan_once(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text):
        return json.loads(text)
    return value
