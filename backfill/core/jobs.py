"""The job row and the job specification, as Python values.

A :class:`JobSpec` is what a caller asks for; it validates every field up front so that a bad spec fails
with an error naming the field instead of a database error halfway through a batch. A :class:`Job` is a
row of ``_private_jobs`` (plus the task identifier and queue name joined in), built by ``from_record``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from json.scanner import make_scanner
from typing import Any, NamedTuple, cast

from backfill.core.checks import SMALLINT_MAX, SMALLINT_MIN, check_aware, check_int, check_name, check_number
from backfill.core.errors import JobSpecError
from backfill.core.flags import RESULT, SUSPECT, TIMEOUT, parse_flags, per_flag_set, value_of, without_values
from backfill.core.statements import Statements

MAX_IDENTIFIER_LENGTH = 128  # tasks_identifier_check / job_queues_queue_name_check
MAX_JOB_KEY_LENGTH = 512  # jobs_key_check

# The core's flags, defined in backfill.core.flags; these names stay for the modules that splice them into SQL.
TIMEOUT_FLAG_PREFIX = TIMEOUT.prefix
SUSPECT_FLAG = SUSPECT.bare
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
# How long a kept result may be kept: a year and a day, enough for any audit trail a queue should hold.
MAX_RESULT_RETENTION_SECONDS = 366 * 24 * 3600.0


def timeout_flag(seconds: float) -> str:
    """The flag that carries a job's timeout: ``backfill:timeout=<seconds>``."""
    return TIMEOUT.with_value(f"{seconds:g}")


def check_timeout(field_name: str, value: Any) -> float:
    must = f"a number of seconds in (0, {MAX_TIMEOUT_SECONDS:g}]"
    check_number(field_name, value, above=0, at_most=MAX_TIMEOUT_SECONDS, must=must, error=JobSpecError)
    return float(value)


def result_flag(seconds: float) -> str:
    """The flag that asks for a job's outcome to be kept ``seconds`` after it ends: ``backfill:result=<seconds>``."""
    return RESULT.with_value(f"{seconds:.10g}")  # every digit of a year's seconds; :g would round to six


def check_retention(field_name: str, value: Any) -> float:
    """A result's retention as seconds: a number of seconds or a ``timedelta``, more than 0 and at most a year."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    must = f"a number of seconds (or a timedelta) in (0, {MAX_RESULT_RETENTION_SECONDS:g}]"
    check_number(field_name, value, above=0, at_most=MAX_RESULT_RETENTION_SECONDS, must=must, error=JobSpecError)
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
            # By alias: pydantic validates by alias, so that is the form the worker's model_validate reads back.
            payload = dump(mode="json", by_alias=True)
        if not isinstance(payload, (Mapping, list, tuple)):
            raise JobSpecError(field_name, f"must be a dict, a list or a pydantic model, not {kind.__name__}")
    try:
        return _encode(payload)
    except (TypeError, ValueError) as error:
        raise JobSpecError(field_name, f"is not JSON-serialisable: {error}") from None
    except RecursionError:  # a payload that contains itself (see _encode), or nested deeper than Python's stack
        raise JobSpecError(field_name, "is not JSON-serialisable: it contains itself or is nested too deeply") from None


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _payload_encoder() -> Callable[[Any], str]:
    """Payloads as compact JSON text. ensure_ascii=False: non-ASCII text is stored as written, not as longer
    \\uXXXX escapes.

    JSONEncoder.encode builds a C encoder on every call, which is half of the time of encoding a small payload
    (``{"n": 1}``); this one is built once. It has no circular-reference markers: the C encoder leaves an entry
    behind when it fails half-way, so a shared dict of markers would then refuse that object for ever after (and
    be shared by threads). A payload that contains itself ends in a RecursionError instead (see encode_payload).
    """
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - an interpreter without the C accelerator
        return json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode
    # markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan
    encoder = make_encoder(None, _not_serialisable, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode(payload: Any) -> str:
        return "".join(encoder(payload, 0))

    return encode


_encode = _payload_encoder()


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
    # Keep the job's outcome (state, return value, timings) this long after it ends, in seconds or a timedelta;
    # stored as a flag (see backfill.core.flags.RESULT). None: only if its task keeps results.
    keep_result: float | timedelta | None = None
    # The payload as JSON text, computed once at construction (see __post_init__).
    payload_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Each check runs only for a field given (and the identifier's only when it is not a plain string of a
        # good length): a bulk enqueue builds thousands of specs that give two or three fields, and the calls
        # for the fields left None were a fifth of building one.
        identifier = self.identifier
        if type(identifier) is not str or not 0 < len(identifier) <= MAX_IDENTIFIER_LENGTH:
            if identifier is None:
                raise JobSpecError("identifier", "is required")
            check_name("identifier", identifier, MAX_IDENTIFIER_LENGTH, error=JobSpecError)
        if self.queue_name is not None:
            check_name("queue_name", self.queue_name, MAX_IDENTIFIER_LENGTH, error=JobSpecError)
        if self.run_at is not None:
            check_aware("run_at", self.run_at, error=JobSpecError)
        if self.max_attempts is not None:
            check_int("max_attempts", self.max_attempts, 1, SMALLINT_MAX, error=JobSpecError)
        if self.priority is not None:
            check_int("priority", self.priority, SMALLINT_MIN, SMALLINT_MAX, error=JobSpecError)
        if self.job_key is not None:
            _check_job_key(self.job_key)
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
        if self.keep_result is not None:
            seconds = check_retention("keep_result", self.keep_result)
            object.__setattr__(self, "flags", (*without_values(self.flags, RESULT), result_flag(seconds)))
        # Serialise now: an unserialisable payload is reported for this spec, not as a failed batch.
        object.__setattr__(self, "payload_json", encode_payload(self.payload))

    def with_job(self, payload: Any, run_at: datetime | None, job_key: str | None) -> JobSpec:
        """This spec for another job: ``payload``, ``run_at`` and ``job_key`` checked and set, every other field
        kept as this spec's construction checked it.

        For bulk enqueues of many jobs of one shape (the client's ``enqueue_many``): checking and copying the
        shared fields again for each of them cost about half of building a spec.
        """
        if run_at is not None:
            check_aware("run_at", run_at, error=JobSpecError)
        if job_key is not None:
            _check_job_key(job_key)
        spec: JobSpec = object.__new__(JobSpec)
        # Frozen: written through the slots' own setters (see _slot_setter).
        _set_identifier(spec, self.identifier)
        _set_payload(spec, payload)
        _set_queue_name(spec, self.queue_name)
        _set_run_at(spec, run_at)
        _set_max_attempts(spec, self.max_attempts)
        _set_job_key(spec, job_key)
        _set_priority(spec, self.priority)
        _set_flags(spec, self.flags)  # a tuple by now: nothing to freeze again
        _set_timeout(spec, self.timeout)
        _set_keep_result(spec, self.keep_result)
        _set_payload_json(spec, encode_payload(payload))
        return spec


def _slot_setter(name: str) -> Callable[[JobSpec, Any], None]:
    """The setter of JobSpec's slot ``name``. A frozen dataclass's fields are set through object.__setattr__ by
    name, which finds this same descriptor at about twice the cost; with_job sets ten fields per job of a bulk
    enqueue (0.35 us of its 1.8)."""
    setter: Callable[[JobSpec, Any], None] = getattr(JobSpec, name).__set__
    return setter


_set_identifier = _slot_setter("identifier")
_set_payload = _slot_setter("payload")
_set_queue_name = _slot_setter("queue_name")
_set_run_at = _slot_setter("run_at")
_set_max_attempts = _slot_setter("max_attempts")
_set_job_key = _slot_setter("job_key")
_set_priority = _slot_setter("priority")
_set_flags = _slot_setter("flags")
_set_timeout = _slot_setter("timeout")
_set_keep_result = _slot_setter("keep_result")
_set_payload_json = _slot_setter("payload_json")


def _check_job_key(job_key: Any) -> None:
    if job_key is not None and (not isinstance(job_key, str) or not 1 <= len(job_key) <= MAX_JOB_KEY_LENGTH):
        raise JobSpecError("job_key", f"must be a string of 1 to {MAX_JOB_KEY_LENGTH} characters")


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
        return timeout_of(self.flags)

    @property
    def keep_result(self) -> float | None:
        """Seconds this job's outcome is kept after it ends, as enqueued (``None``: only if its task says so)."""
        return retention_of(self.flags)


@per_flag_set
def retention_of(flags: frozenset[str]) -> float | None:
    """The result retention a job's flags carry (``None``: none, or unreadable, when the task's applies)."""
    return _seconds_in(value_of(flags, RESULT), at_most=MAX_RESULT_RETENTION_SECONDS)


@per_flag_set
def timeout_of(flags: frozenset[str]) -> float | None:
    """The per-job timeout a job's flags carry (``None``: none, or unreadable); the worker asks for every
    job it runs, hence the cache per flag set."""
    return _seconds_in(value_of(flags, TIMEOUT))


def _seconds_in(text: str | None, *, at_most: float = math.inf) -> float | None:
    """The seconds a valued flag's ``text`` gives, when it is a number above 0 and at most ``at_most``; else
    ``None``: a flag written by hand and unreadable falls back to the task's value rather than failing the job."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 < seconds <= at_most else None


# The columns of jobs.sql's job_columns, in its order: what jobs_from_rows unpacks by position.
JOB_COLUMNS = (
    "id",
    "job_queue_id",
    "task_id",
    "payload",
    "priority",
    "run_at",
    "attempts",
    "max_attempts",
    "last_error",
    "created_at",
    "updated_at",
    "key",
    "locked_at",
    "locked_by",
    "revision",
    "flags",
)


# Positions in JOB_COLUMNS, for the decoders that unpack rows by position.
_JOB_COLUMN_COUNT = len(JOB_COLUMNS)
_TASK_ID = JOB_COLUMNS.index("task_id")
_JOB_QUEUE_ID = JOB_COLUMNS.index("job_queue_id")

# What fetch.sql's fetch_jobs (the worker's claim) returns: job_columns, then the queue name.
CLAIMED_JOB_COLUMNS = (*JOB_COLUMNS, "queue_name")


def claimed_job(row: Any, task_names: Mapping[int, str]) -> Job:
    """:meth:`Job.from_record` for a row of exactly ``CLAIMED_JOB_COLUMNS`` (an asyncpg record), by position, with
    its task's identifier from ``task_names`` (task id -> identifier). A worker builds one per job it runs: by
    name it cost 2.0-2.5 us a row, by position 1.0 (the caller checks the rows' shape once per claim)."""
    return _job_of(row[:_JOB_COLUMN_COUNT], task_names[row[_TASK_ID]], row[_JOB_COLUMN_COUNT])


def _job_of(columns: Sequence[Any], task_identifier: str, queue_name: str | None) -> Job:
    """A job from the values of ``JOB_COLUMNS``, in their order, and its names."""
    (
        job_id,
        job_queue_id,
        task_id,
        payload,
        priority,
        run_at,
        attempts,
        max_attempts,
        last_error,
        created_at,
        updated_at,
        key,
        locked_at,
        locked_by,
        revision,
        flags_text,
    ) = columns
    return Job(
        job_id,
        task_identifier,
        _loads(payload) if type(payload) is str else payload,
        queue_name,
        priority,
        run_at,
        attempts,
        max_attempts,
        last_error,
        created_at,
        updated_at,
        key,
        locked_at,
        locked_by,
        revision or 0,
        _NO_FLAGS if flags_text is None else parse_flags(flags_text),  # parsed once per distinct text
        task_id,
        job_queue_id,
    )


def jobs_written(specs: Sequence[JobSpec], written: Mapping[str, Any]) -> list[Job]:
    """The jobs that enqueue.sql's ``insert_jobs`` wrote for ``specs`` (none with a job key), in their order,
    from ``written``, its row of what only the database knows of them: ``ids``, ``task_ids``, ``queue_ids`` and
    ``run_ats`` (arrays in the specs' order) and ``created_at`` (the statement's ``now()``).

    The rest is each spec with Graphile's defaults, as the statement stored it: the payload is the spec's JSON
    text decoded (the json column keeps the text as sent), flags stored as ``{"flag": true}`` read back as the
    set of the spec's flags, and a fresh job's zero attempts, no key, lock or error, and revision 0.
    """
    created_at = written["created_at"]
    rows = zip(specs, written["ids"], written["task_ids"], written["queue_ids"], written["run_ats"], strict=True)
    no_flags = _NO_FLAGS
    flag_sets: dict[Any, frozenset[str]] = {}  # specs of one shape share their flags tuple
    jobs = []
    for spec, job_id, task_id, queue_id, run_at in rows:
        flags = spec.flags
        if not flags:
            flag_set = no_flags
        elif flags in flag_sets:
            flag_set = flag_sets[flags]
        else:
            flag_set = flag_sets[flags] = frozenset(flags)
        priority, max_attempts = spec.priority, spec.max_attempts
        jobs.append(
            Job(
                job_id,
                spec.identifier,
                _loads(spec.payload_json),
                spec.queue_name,
                0 if priority is None else priority,
                run_at,
                0,
                25 if max_attempts is None else max_attempts,
                None,
                created_at,
                created_at,
                None,
                None,
                None,
                0,
                flag_set,
                task_id,
                queue_id,
            )
        )
    return jobs


def jobs_from_rows(rows: Sequence[Any], task_names: Mapping[int, str], queue_names: Mapping[int, str]) -> list[Job]:
    """:meth:`Job.from_record` for a batch of rows selecting exactly ``job_columns`` (a bulk enqueue's), with the
    names of their task and queue ids.

    Faster per row than ``from_record``, which a bulk enqueue would call a thousand times a statement: the row is
    unpacked by position (no lookup by name), as the worker's claim is (:func:`claimed_job`, the same decoder).
    Rows of any other shape go through ``from_record``, so a change to job_columns cannot silently shift the
    fields.
    """
    if not rows:
        return []
    if tuple(rows[0].keys()) != JOB_COLUMNS:
        return [
            Job.from_record(
                row,
                task_identifier=task_names[row["task_id"]],
                queue_name=None if row["job_queue_id"] is None else queue_names[row["job_queue_id"]],
            )
            for row in rows
        ]
    return [
        _job_of(
            row,
            task_names[row[_TASK_ID]],
            None if row[_JOB_QUEUE_ID] is None else queue_names[row[_JOB_QUEUE_ID]],
        )
        for row in rows
    ]


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
