"""Reading job outcomes: ended (kept, or failed for good and still in the jobs table), pending, or unavailable.

One statement answers for many jobs (results.sql's ``outcomes``). What it cannot say alone is whether a pending
job will keep its outcome when it carries no ``backfill:result=`` flag (a job enqueued by Node, or SQL, of a task
that declares ``keep_result``): :class:`OutcomeReader` asks the task's defaults, this process's or those a runner
published, so that waiting on a job that will keep nothing fails at once instead of at its timeout. When neither
knows the task, the job is taken as pending: a wait on it then ends when it ends, with its outcome, or with
:class:`~backfill.core.errors.ResultUnavailableError` if it kept none (found by the wait's poll).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from backfill.core import ResultUnavailableError, SchemaName, default_registry
from backfill.core.extension import ConnectionSource, connection_from
from backfill.results.models import JobOutcome
from backfill.results.queries import OutcomeSql
from backfill.tasks.defaults import TaskDefaults


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the database says of one job: ``outcome`` when it has ended, else whether it is still ``pending``
    (queued or running) and whether it asked to keep its outcome (``flagged``), and its task."""

    job_id: int
    outcome: JobOutcome | None
    pending: bool
    flagged: bool
    task: str | None


async def look_up(executor: ConnectionSource, schema: SchemaName, job_ids: Sequence[int]) -> dict[int, Lookup]:
    """One :class:`Lookup` per id in ``job_ids``, in one statement."""
    async with connection_from(executor, stateless=True) as connection:
        rows = await connection.fetch(OutcomeSql.for_schema(schema).outcomes, list(job_ids))
    found: dict[int, Lookup] = {}
    for row in rows:
        job_id = row["job_id"]
        if row["state"] is not None:
            found[job_id] = Lookup(job_id, JobOutcome.from_kept(row), False, True, row["task_identifier"])
        elif row["queued"] and not row["running"] and row["job_attempts"] >= row["job_max_attempts"]:
            # Failed for good by something that kept nothing (a Node worker, an operator, the sweeper's poison
            # rule), and not yet moved to the dead-letter queue: the row itself says how it ended.
            found[job_id] = Lookup(
                job_id, JobOutcome.from_dead_job(row), False, bool(row["job_keeps"]), row["job_task"]
            )
        else:
            found[job_id] = Lookup(job_id, None, bool(row["queued"]), bool(row["job_keeps"]), row["job_task"])
    return found


TaskDefaultsLookup = Callable[[str], Awaitable[TaskDefaults | None]]


class OutcomeReader:
    """Outcomes of one schema's jobs: ``pool`` gives the connections, ``task_defaults`` a task's defaults (the
    client's :meth:`~backfill.client.async_client.BackfillClient.task_defaults`)."""

    def __init__(
        self,
        pool: Callable[[], Awaitable[ConnectionSource]],
        schema: SchemaName,
        task_defaults: TaskDefaultsLookup,
    ) -> None:
        self._pool = pool
        self._schema = schema
        self._task_defaults = task_defaults

    async def outcome(self, job_id: int) -> JobOutcome | None:
        """``job_id``'s outcome; ``None`` while it is queued or running and will keep one.

        Raises :class:`~backfill.core.errors.ResultUnavailableError` when none is kept and none will be."""
        lookup = (await look_up(await self._pool(), self._schema, [job_id]))[job_id]
        return await self.settle(lookup)

    async def settle(self, lookup: Lookup) -> JobOutcome | None:
        """The outcome in ``lookup``, ``None`` if it is pending and will keep one, else the error that says why
        there is none."""
        if lookup.outcome is not None:
            return lookup.outcome
        if not lookup.pending:
            raise ResultUnavailableError(
                lookup.job_id,
                "no outcome is kept for it and it is not queued: it never existed, it kept no outcome "
                "(keep_result was not asked for), or its outcome's retention has passed",
            )
        if not lookup.flagged and await self._task_keeps(lookup.task) is False:
            raise ResultUnavailableError(
                lookup.job_id,
                f"it will keep no outcome: neither the job nor its task {lookup.task!r} asked for keep_result "
                "(enqueue with keep_result=..., or declare it on the task)",
            )
        return None

    async def _task_keeps(self, task: str | None) -> bool | None:
        """Whether ``task`` declares ``keep_result``, as far as this process can tell: its own declaration, else
        the one a runner published; ``None`` when neither is known (a job of it may still keep its outcome: a
        runner that never published, or a task registered on a registry of its own, may keep it)."""
        if task is None:
            return None
        definition = default_registry.get(task)  # a core @task(keep_result=...) in this process
        if definition is not None and definition.keep_result is not None:
            return True
        defaults = await self._task_defaults(task)
        if defaults is None:
            return None
        return defaults.keep_result is not None


def as_job_id(job: Any) -> int:
    """A job id from an id or a :class:`~backfill.core.Job` (anything with an integer ``id``)."""
    job_id = getattr(job, "id", job)
    if isinstance(job_id, bool) or not isinstance(job_id, int):
        raise TypeError(f"a job id must be an int or a Job, not {type(job).__name__}")
    return job_id
