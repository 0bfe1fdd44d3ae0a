"""The statements a worker runs (``core/sql/fetch.sql`` and ``release.sql``), gathered once at start-up.

Only the fetch filter's clauses are composed here (:func:`with_fetch_filter`); the rest is loaded as it stands
in the files. asyncpg prepares each statement on first use per connection and reuses it (its statement cache),
so the worker pays for parsing and planning once; with ``prepared_statements=False`` (PgBouncer in transaction
mode) the cache is switched off on the worker's pool instead.

Every write after a claim is fenced by the claim itself: ``locked_by = <this worker's id>`` and
``locked_at = <the locked_at the claim wrote>``. If the lock was taken away (force-unlocked, or released as
stale and perhaps claimed by another worker), the write changes nothing and the caller learns which jobs
it no longer owned. The worker id alone is not enough: a released job may be claimed again by the *same*
worker, and the first attempt's late result must not complete or unlock the second attempt's claim.
``locked_at`` is the claim's token rather than ``attempts`` because Graphile's ``add_job`` (with a key) and
``remove_job`` set ``attempts = max_attempts`` on a running job, and its worker must still complete it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType

from backfill.core.jobs import SUSPECT_FLAG, JobSql
from backfill.core.run.job_slice import JobSlice
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements


class FetchSql(Statements, file=("backfill.core.sql", "fetch.sql")):
    """Claiming jobs (see fetch.sql, which numbers the parameters the fetch and its check share)."""

    includes = (JobSql,)
    fetch_jobs: str
    runnable_exists: str
    runnable: str
    claim_session: str
    ensure_tasks: str
    task_ids: str


class ReleaseSql(Statements, file=("backfill.core.sql", "release.sql")):
    """Giving claims back: results, returns, orphans and stale locks (see release.sql)."""

    literals = MappingProxyType({"suspect_flag": SUSPECT_FLAG})
    complete_jobs: str
    complete_jobs_keeping_results: str
    fail_jobs: str
    return_jobs: str
    claim_fence: str
    keep_outcomes: str
    unlock_released_queues: str
    release_orphans: str
    release_stale_locks: str


# The fetch filter's flag conditions, in the order their arrays are numbered after fetch.sql's $1 worker id,
# $2 identifiers and $3 limit: a filter without one leaves out its parameter, and the next takes its number. Both
# the clauses (with_fetch_filter) and the arguments (fetch_filter_arguments) follow this one table.
FLAG_PARAMETERS: tuple[tuple[str, str], ...] = (
    ("forbidden_flags", "and (jobs.flags ?| ${number}::text[]) is not true"),
    ("required_flags", "and jobs.flags ?| ${number}::text[]"),
)
_FIRST_FLAG_PARAMETER = 4
# Where fetch.sql's fetch_jobs and runnable_exists take the filter's clauses (a comment when there are none).
FETCH_FILTER_SLOT = "/* fetch filter */"


def with_fetch_filter(statement: str, fetch_filter: JobSlice) -> str:
    """``statement`` (fetch.sql's fetch_jobs or runnable_exists) narrowed by ``fetch_filter``: the one place where
    Python composes SQL."""
    clauses: list[str] = []
    if fetch_filter.min_priority is not None:
        clauses.append(f"and jobs.priority >= {int(fetch_filter.min_priority)}")
    if fetch_filter.max_priority is not None:
        clauses.append(f"and jobs.priority <= {int(fetch_filter.max_priority)}")
    number = _FIRST_FLAG_PARAMETER
    for field, clause in FLAG_PARAMETERS:
        if getattr(fetch_filter, field):
            clauses.append(clause.format(number=number))
            number += 1
    if statement.count(FETCH_FILTER_SLOT) != 1:
        raise ValueError(f"a statement narrowed by a fetch filter must hold {FETCH_FILTER_SLOT} once")
    return statement.replace(FETCH_FILTER_SLOT, "\n     ".join(clauses)) if clauses else statement


# Where fetch.sql's statements take the paused-queues clause (a comment in the variant without pauses).
PAUSED_QUEUES_SLOT = "/* paused queues */"


def with_paused_queues(statement: str, fetch_filter: JobSlice) -> str:
    """``statement`` (fetch_jobs or runnable_exists, already narrowed by ``fetch_filter``) leaving out the jobs of
    named queues whose names are in its last parameter: the variant a worker runs while queues are paused."""
    number = _FIRST_FLAG_PARAMETER + sum(1 for field, _ in FLAG_PARAMETERS if getattr(fetch_filter, field))
    if statement.count(PAUSED_QUEUES_SLOT) != 1:
        raise ValueError(f"a statement that honours paused queues must hold {PAUSED_QUEUES_SLOT} once")
    return statement.replace(PAUSED_QUEUES_SLOT, f"and job_queues.queue_name <> all(${number}::text[])")


def fetch_filter_arguments(forbidden_flags: Sequence[str], required_flags: Sequence[str]) -> list[list[str]]:
    """The flag arrays to pass after worker id, identifiers and limit, numbered as :func:`with_fetch_filter`
    numbers them (a filter has a flag condition exactly when its list is not empty: see WorkerOptions)."""
    given = {"forbidden_flags": forbidden_flags, "required_flags": required_flags}
    return [list(given[field]) for field, _ in FLAG_PARAMETERS if given[field]]


@dataclass(frozen=True, slots=True)
class WorkerQueries:
    """SQL text of every worker statement for one schema, the fetch narrowed by the worker's filter."""

    fetch_jobs: str
    runnable_exists: str
    # The same two, taking the names of paused queues as their last parameter (see with_paused_queues).
    fetch_jobs_pausing_queues: str
    runnable_exists_pausing_queues: str
    claim_session: str
    complete_jobs: str
    complete_jobs_keeping_results: str
    fail_jobs: str
    return_jobs: str
    release_stale_locks: str
    release_orphans: str
    ensure_tasks: str
    task_ids: str

    @classmethod
    def for_schema(cls, schema: SchemaName, fetch_filter: JobSlice | None = None) -> WorkerQueries:
        """The statements for ``schema``; ``fetch_filter`` narrows what the fetch may claim (a lane)."""
        fetch_filter = fetch_filter if fetch_filter is not None else JobSlice()
        fetch = FetchSql.for_schema(schema)
        release = ReleaseSql.for_schema(schema)
        fetch_jobs = with_fetch_filter(fetch.fetch_jobs, fetch_filter)
        runnable_exists = with_fetch_filter(fetch.runnable_exists, fetch_filter)
        return cls(
            fetch_jobs=fetch_jobs,
            runnable_exists=runnable_exists,
            fetch_jobs_pausing_queues=with_paused_queues(fetch_jobs, fetch_filter),
            runnable_exists_pausing_queues=with_paused_queues(runnable_exists, fetch_filter),
            claim_session=fetch.claim_session,
            complete_jobs=release.complete_jobs,
            complete_jobs_keeping_results=release.complete_jobs_keeping_results,
            fail_jobs=release.fail_jobs,
            return_jobs=release.return_jobs,
            release_stale_locks=release.release_stale_locks,
            release_orphans=release.release_orphans,
            ensure_tasks=fetch.ensure_tasks,
            task_ids=fetch.task_ids,
        )
