"""The exception tree of backfill.

Every error backfill raises on purpose derives from :class:`BackfillError`::

    BackfillError
    ├── ConfigurationError          a bad option, schema name or environment value
    ├── MigrationError              the schema cannot be installed or upgraded
    │   └── IncompatibleSchemaError a breaking revision newer than ours, or one too old to upgrade
    ├── JobSpecError                a job specification that cannot be enqueued (names the field)
    │   └── PayloadTooLargeError    a payload over the enqueuing client's size limit
    ├── TaskDefinitionError         a task registered twice or with a handler of the wrong shape
    ├── PayloadValidationError      a payload that does not validate against its task's model
    ├── DatabaseError               a database call failed; ``__cause__`` keeps asyncpg's error
    ├── JobTimeoutError             an attempt ran past its deadline and was cancelled (also a TimeoutError)
    ├── CallTimeoutError            a blocking client call ran past its timeout (also a TimeoutError)
    ├── ResultUnavailableError      no outcome is kept for a job, nor will be (also a LookupError)
    ├── ResultTimeoutError          a wait for a job's outcome ran past its timeout (also a TimeoutError)
    ├── JobFailedError              the outcome unwrapped is a failure or a cancellation, not a value
    ├── BatchJobError               some items of a batch job failed; only those are retried
    └── TaskControl                 raised *by handlers* to steer the outcome of an attempt
        ├── PermanentFailure        fail the job now, with no further attempts
        └── RetryAfter              fail this attempt and run the next one after a given delay

Errors from asyncpg that escape a public call are wrapped in :class:`DatabaseError` with the original
chained as ``__cause__``, so callers can catch one family without importing asyncpg.
"""

from __future__ import annotations


class BackfillError(Exception):
    """Root of every error backfill raises on purpose."""


class ConfigurationError(BackfillError):
    """An option, schema name or environment variable has a value backfill cannot use."""


class MigrationError(BackfillError):
    """The Graphile schema could not be installed or upgraded."""


class IncompatibleSchemaError(MigrationError):
    """The database holds a schema revision this version of backfill must not touch."""


class JobSpecError(BackfillError, ValueError):
    """A job specification is invalid. ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PayloadTooLargeError(JobSpecError):
    """A payload, as JSON, is larger than the enqueuing client's limit (``BACKFILL_MAX_PAYLOAD_BYTES``). The
    message names the task, the size and the limit, never the payload; nothing was written."""

    def __init__(self, task: str, size: int, limit: int, *, field: str = "payload") -> None:
        super().__init__(
            field,
            f"the payload of a {task!r} job is {size:,} bytes of JSON, over the limit of {limit:,} bytes "
            "(BACKFILL_MAX_PAYLOAD_BYTES; 0 turns the limit off). Store large data elsewhere and enqueue a "
            "reference to it",
        )
        self.task = task
        self.size = size
        self.limit = limit

    def at(self, field: str) -> PayloadTooLargeError:
        """The same error for the request at ``field`` (``requests[3].payload``)."""
        return PayloadTooLargeError(self.task, self.size, self.limit, field=field)


class TaskDefinitionError(BackfillError):
    """A task handler was registered in a way that cannot work."""


class PayloadValidationError(BackfillError, ValueError):
    """A job's payload does not match its task's payload model. ``fields`` lists the offending fields."""

    def __init__(self, task_identifier: str, fields: list[str], detail: str) -> None:
        names = ", ".join(fields) if fields else "payload"
        super().__init__(f"invalid payload for task {task_identifier!r} (field {names}): {detail}")
        self.task_identifier = task_identifier
        self.fields = fields


class DatabaseError(BackfillError):
    """A database operation failed; the asyncpg exception is kept as ``__cause__``."""


class JobTimeoutError(BackfillError, TimeoutError):
    """A handler ran past its task's or job's timeout and was cancelled; the attempt fails with this."""

    def __init__(self, timeout: float, *, stuck: bool = False) -> None:
        detail = " and ignored cancellation (reported as stuck)" if stuck else " and was cancelled"
        super().__init__(f"timed out: the handler ran longer than its {timeout:g}s timeout{detail}")
        self.timeout = timeout
        self.stuck = stuck


class CallTimeoutError(BackfillError, TimeoutError):
    """A blocking call (``SyncBackfillClient``'s) did not finish within its timeout; the work was cancelled.
    ``operation`` names the call, ``timeout`` is in seconds."""

    def __init__(self, operation: str, timeout: float) -> None:
        super().__init__(
            f"{operation} did not finish within its {timeout:g}s timeout and was cancelled "
            "(database unreachable, or a statement waiting on a lock?)"
        )
        self.operation = operation
        self.timeout = timeout


class BatchJobError(BackfillError):
    """Some items of a batch job (an array payload, one result per item) failed. ``errors`` holds their errors;
    the job is retried with only the failed items as its payload, as Graphile does."""

    def __init__(self, errors: list[BaseException]) -> None:
        # Graphile's last_error for a partial batch: a header line, then one message per failed item.
        super().__init__("Batch failures:\n" + "\n".join(_item_message(e) for e in errors))
        self.errors = errors


def _item_message(error: BaseException) -> str:
    # An item's exception whose str() raises must not turn the batch's result into a crash of the worker.
    try:
        return str(error) or type(error).__name__
    except Exception:
        return type(error).__name__


class TaskControl(BackfillError):
    """Base of the exceptions a handler raises to steer what happens to its job."""


class PermanentFailure(TaskControl):
    """Raised by a handler to fail its job permanently: no further attempts are made."""


class RetryAfter(TaskControl):
    """Raised by a handler to fail this attempt and run the next one ``delay`` seconds from now (a rate limit's
    Retry-After, say), instead of after the usual backoff. The attempt still counts toward ``max_attempts``."""

    def __init__(self, delay: float, message: str = "") -> None:
        # Checked by hand, not with backfill.core.checks: that module raises this module's errors.
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < 1e9:
            raise ValueError(f"RetryAfter delay must be a non-negative number of seconds, got {delay!r}")
        super().__init__(message or f"retry requested in {delay:g}s")
        self.delay = float(delay)


class ResultUnavailableError(BackfillError, LookupError):
    """No outcome is kept for the job, and none will be: it never existed, it does not keep its outcome (neither
    its enqueue nor its task asked for ``keep_result``), or its outcome expired. ``job_id`` names it."""

    def __init__(self, job_id: int, reason: str) -> None:
        super().__init__(f"job {job_id}: {reason}")
        self.job_id = job_id


class ResultTimeoutError(BackfillError, TimeoutError):
    """A wait for a job's outcome ran past its timeout; the job has not ended (it is still queued or running)."""

    def __init__(self, job_id: int, timeout: float) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class JobFailedError(BackfillError):
    """Raised by ``JobResult.unwrap()`` for a job that failed for good or was cancelled. ``state`` says which,
    ``error`` is its last error or the cancellation's reason."""

    def __init__(self, job_id: int, state: str, error: str | None) -> None:
        super().__init__(f"job {job_id} {state}" + (f": {error}" if error else ""))
        self.job_id = job_id
        self.state = state
        self.error = error
