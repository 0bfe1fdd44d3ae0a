"""The statements a worker runs, built once per schema at start-up.

Every parameter is cast, and the quoted schema name is spliced in here and nowhere else. asyncpg prepares
each statement on first use per connection and reuses it (its statement cache), so the worker pays for
parsing and planning once; with ``prepared_statements=False`` (PgBouncer in transaction mode) the cache is
switched off on the worker's pool instead.

Every write after a claim is fenced by the claim itself: ``locked_by = <this worker's id>`` and
``locked_at = <the locked_at the claim wrote>``. If the lock was taken away (force-unlocked, or released as
stale and perhaps claimed by another worker), the write changes nothing and the caller learns which jobs
it no longer owned. The worker id alone is not enough: a released job may be claimed again by the *same*
worker, and the first attempt's late result must not complete or unlock the second attempt's claim.
``locked_at`` is the claim's token rather than ``attempts`` because Graphile's ``add_job`` (with a key) and
``remove_job`` set ``attempts = max_attempts`` on a running job, and its worker must still complete it.
"""

from __future__ import annotations

from dataclasses import dataclass

from backfill.core.jobs import SUSPECT_FLAG
from backfill.core.schema import SchemaName

# The columns of a claimed job handed to Python. Payload and flags come as text so that no JSON codec is
# needed on the pool (a caller may pass their own). The task identifier is mapped from task_id in Python
# (the worker knows its tasks); the queue name is looked up only for jobs that have a queue. Per-row
# lookups of both cost about a tenth of a 500-job fetch.
_CLAIMED_COLUMNS = """
    jobs.id, jobs.job_queue_id, jobs.task_id, jobs.payload::text as payload, jobs.priority, jobs.run_at,
    jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.created_at, jobs.updated_at, jobs.key,
    jobs.locked_at, jobs.locked_by, jobs.revision, jobs.flags::text as flags,
    case when jobs.job_queue_id is not null then
      (select q.queue_name from {queues} as q where q.id = jobs.job_queue_id)
    end as queue_name
"""


@dataclass(frozen=True, slots=True)
class FetchFilter:
    """Which runnable jobs a fetch may claim beyond "our tasks": how a lane gets its share of the jobs table.

    Priority bounds are inclusive and spliced into the statement as integer literals (they are fixed for a
    worker's life, and a literal lets the planner use the ``(priority, run_at)`` index range). Flags are
    passed as parameters: after ``$1`` worker id, ``$2`` identifiers and ``$3`` limit come the forbidden flags
    (a job carrying any of them is skipped), then the required flags (a job must carry at least one).
    """

    min_priority: int | None = None
    max_priority: int | None = None
    forbidden_flags: bool = False
    required_flags: bool = False


@dataclass(frozen=True, slots=True)
class WorkerQueries:
    """SQL text of every worker statement for one schema."""

    fetch_jobs: str
    runnable_exists: str
    complete_jobs: str
    fail_jobs: str
    return_jobs: str
    release_stale_locks: str
    release_orphans: str
    ensure_tasks: str
    task_ids: str

    @classmethod
    def for_schema(cls, schema: SchemaName, fetch_filter: FetchFilter | None = None) -> WorkerQueries:
        """The statements for ``schema``; ``fetch_filter`` narrows what the fetch may claim (a lane)."""
        fetch_filter = fetch_filter if fetch_filter is not None else FetchFilter()
        jobs = schema.qualify("_private_jobs")
        queues = schema.qualify("_private_job_queues")
        tasks = schema.qualify("_private_tasks")
        errors = schema.qualify("backfill_job_errors")
        claimed = _CLAIMED_COLUMNS.format(queues=queues)
        return cls(
            fetch_jobs=_fetch_sql(jobs, queues, tasks, claimed, fetch_filter),
            runnable_exists=_runnable_exists_sql(jobs, queues, tasks, fetch_filter),
            complete_jobs=f"""
                with done as (
                  delete from {jobs} as jobs
                   using unnest($1::bigint[], $3::timestamptz[]) as done_ids(id, locked_at)
                   where jobs.id = done_ids.id
                     and jobs.locked_by = $2::text
                     and jobs.locked_at = done_ids.locked_at
                  returning jobs.id, jobs.job_queue_id
                ){_unlock_queues_of(queues, "done", worker_param="$2")}
            """,
            # Graphile's backoff: the next attempt waits exp(min(attempts, 10)) seconds (e^1 ≈ 2.7 s after
            # the first failure, capped at e^10 ≈ 6 h), unless the worker chose a delay (a retry policy, or
            # an interrupted job); that delay counts from the database's clock, so app clock skew is moot.
            # A permanent failure uses up the remaining attempts.
            # A replacement payload (batch jobs) keeps only the items that failed. Every failure's error is
            # also kept in backfill_job_errors, in the same statement (the dead-letter queue shows them all),
            # with its exception type and traceback, which Graphile's jobs table has no room for.
            fail_jobs=f"""
                with failed as (
                  update {jobs} as jobs
                     set last_error = f.message,
                         run_at = case
                           when f.retry_delay is not null then now() + f.retry_delay * interval '1 second'
                           else greatest(now(), jobs.run_at)
                                + exp(least(jobs.attempts, 10)) * interval '1 second'
                         end,
                         attempts = case when f.permanent then jobs.max_attempts else jobs.attempts end,
                         payload = coalesce(f.payload, jobs.payload),
                         -- An attempt that ended, even in failure, did not kill its worker: no longer a suspect.
                         flags = case
                           when jobs.flags ? '{SUSPECT_FLAG}' then nullif(jobs.flags - '{SUSPECT_FLAG}', '{{}}'::jsonb)
                           else jobs.flags
                         end,
                         locked_by = null,
                         locked_at = null
                    from unnest(
                           $1::bigint[], $2::text[], $3::json[], $4::boolean[], $5::float8[], $7::timestamptz[],
                           $8::int[], $9::text[], $10::text[]
                         ) as f(id, message, payload, permanent, retry_delay, locked_at, attempt, error_type, tb)
                   where jobs.id = f.id
                     and jobs.locked_by = $6::text
                     and jobs.locked_at = f.locked_at
                  returning jobs.id, jobs.job_queue_id, jobs.last_error, f.permanent, f.attempt, f.error_type, f.tb
                ), history as (
                  -- The attempt that ran (as claimed), not the column: a permanent failure has just set that
                  -- to max_attempts.
                  insert into {errors} (job_id, attempt, error, permanent, exception_type, traceback)
                  select failed.id, failed.attempt, failed.last_error, failed.permanent, failed.error_type, failed.tb
                    from failed
                ){_unlock_queues_of(queues, "failed", worker_param="$6")}
            """,
            # Jobs claimed but never started (shutdown, or dropped from the local queue) get their attempt
            # back: they did not run, so they must not move closer to permanent failure.
            return_jobs=f"""
                with returned as (
                  update {jobs} as jobs
                     set attempts = greatest(0, jobs.attempts - 1),
                         locked_by = null,
                         locked_at = null
                    from unnest($1::bigint[], $3::timestamptz[]) as returned_ids(id, locked_at)
                   where jobs.id = returned_ids.id
                     and jobs.locked_by = $2::text
                     and jobs.locked_at = returned_ids.locked_at
                  returning jobs.id, jobs.job_queue_id
                ){_unlock_queues_of(queues, "returned", worker_param="$2")}
            """,
            # Graphile's last resort for locks whose owner vanished: four hours is long enough that no
            # live Node worker still holds such a job, so the rule is safe for rows we do not own.
            release_stale_locks=f"""
                with stale_jobs as (
                  update {jobs} as jobs
                     set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, now())
                   where jobs.locked_at < now() - interval '4 hours'
                  returning 1
                ), stale_queues as (
                  update {queues} as job_queues
                     set locked_at = null, locked_by = null
                   where job_queues.locked_at < now() - interval '4 hours'
                  returning 1
                )
                select (select count(*) from stale_jobs) as jobs, (select count(*) from stale_queues) as queues
            """,
            # After a reconnect: rows still locked by us that no runner, local queue entry or pending result
            # owns ($2) were claimed by a fetch whose reply never arrived. Nobody will ever run or release
            # them, so hand them back now (they never started: refund the attempt) instead of after 4 hours.
            # Queue locks of ours that guard none of the owned jobs are orphans of the same kind.
            release_orphans=f"""
                with orphans as (
                  update {jobs} as jobs
                     set attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null
                   where jobs.locked_by = $1::text
                     and not (jobs.id = any($2::bigint[]))
                  returning jobs.id
                ), orphan_queues as (
                  update {queues} as job_queues
                     set locked_by = null, locked_at = null
                   where job_queues.locked_by = $1::text
                     and not exists (
                       select 1 from {jobs} as owned
                        where owned.job_queue_id = job_queues.id
                          and owned.locked_by = $1::text
                          and owned.id = any($2::bigint[])
                     )
                  returning job_queues.id
                )
                select array(select id from orphans) as jobs, (select count(*) from orphan_queues) as queues
            """,
            # Register our identifiers like add_job does (the not-exists guard keeps identity values), so a
            # job enqueued later by raw INSERT can reference them.
            ensure_tasks=f"""
                insert into {tasks} (identifier)
                select wanted.identifier
                  from unnest($1::text[]) as wanted(identifier)
                 where not exists (select 1 from {tasks} as t where t.identifier = wanted.identifier)
                on conflict do nothing
            """,
            task_ids=f"select id, identifier from {tasks} where identifier = any($1::text[])",
        )


def _unlock_queues_of(queues: str, cte: str, *, worker_param: str) -> str:
    """The tail shared by complete, fail and return: unlock the named queues of the jobs that ``cte``
    released (fenced by our worker id, ``worker_param``) and return the ids it touched."""
    return f"""
        , unlocked as (
          update {queues} as job_queues
             set locked_by = null, locked_at = null
            from {cte}
           where {cte}.job_queue_id is not null
             and job_queues.id = {cte}.job_queue_id
             and job_queues.locked_by = {worker_param}::text
        )
        select id from {cte}
    """


def _filter_clauses(fetch_filter: FetchFilter) -> str:
    """The fetch filter's extra conditions; the flag arrays are ``$4`` and ``$5`` (see :class:`FetchFilter`)."""
    clauses: list[str] = []
    if fetch_filter.min_priority is not None:
        clauses.append(f"and jobs.priority >= {int(fetch_filter.min_priority)}")
    if fetch_filter.max_priority is not None:
        clauses.append(f"and jobs.priority <= {int(fetch_filter.max_priority)}")
    parameter = 4
    if fetch_filter.forbidden_flags:
        clauses.append(f"and (jobs.flags ?| ${parameter}::text[]) is not true")
        parameter += 1
    if fetch_filter.required_flags:
        clauses.append(f"and jobs.flags ?| ${parameter}::text[]")
    return "\n             ".join(clauses)


def _runnable_conditions(jobs: str, queues: str, tasks: str, fetch_filter: FetchFilter, *, lock_queues: bool) -> str:
    """What makes a job runnable for this worker now: the WHERE clause the fetch and the check share.

    With ``lock_queues``, eligible named queues are locked with SKIP LOCKED as they are read (the fetch); without,
    they are only read (the check).
    """
    locking = "for update skip locked" if lock_queues else ""
    return f"""
           where jobs.is_available = true
             and jobs.run_at <= now()
             and jobs.task_id = any(array(select t.id from {tasks} as t where t.identifier = any($2::text[])))
             and (
               jobs.job_queue_id is null
               or jobs.job_queue_id in (
                 select job_queues.id from {queues} as job_queues where job_queues.is_available = true {locking}
               )
             )
             {_filter_clauses(fetch_filter)}"""


def _runnable_exists_sql(jobs: str, queues: str, tasks: str, fetch_filter: FetchFilter) -> str:
    # The fetch's conditions without its locks, to tell "nothing runnable" from "the runnable rows were
    # row-locked by a concurrent fetch": that fetch locks every available named queue for the length of its
    # statement, so an empty claim alone does not prove that nothing is left (run_once relies on this).
    # It takes the fetch's arguments ($1 worker id and $3 limit only typed here) so FetchFilter's numbering holds.
    return f"""
        select exists (
          select 1
            from {jobs} as jobs {_runnable_conditions(jobs, queues, tasks, fetch_filter, lock_queues=False)}
             and $1::text is not null
           limit $3::int
        ) as runnable
    """


def _fetch_sql(jobs: str, queues: str, tasks: str, claimed: str, fetch_filter: FetchFilter) -> str:
    # Eligible named queues are locked up front with SKIP LOCKED, so two workers fetching at once never
    # take jobs of the same queue. A batch may still find several jobs of one queue; only the first
    # (by priority, run_at) is kept, because a named queue runs one job at a time. The rest stay untouched
    # (never updated), and their queue stays locked by the kept job until it finishes.
    #
    # Task ids are resolved inside the statement from our identifiers, so a task row re-created under a new
    # id (after GC_TASK_IDENTIFIERS cleanup, say) is picked up without a restart.
    return f"""
        with candidates as (
          select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
            from {jobs} as jobs {_runnable_conditions(jobs, queues, tasks, fetch_filter, lock_queues=True)}
           order by jobs.priority asc, jobs.run_at asc
           limit $3::int
             for update skip locked
        ), chosen as (
          -- Jobs outside named queues all go; of each named queue, only the first (distinct on sorts just
          -- those rows, not the whole batch).
          select candidates.id, candidates.job_queue_id from candidates where candidates.job_queue_id is null
          union all
          select first_in_queue.id, first_in_queue.job_queue_id
            from (
              select distinct on (candidates.job_queue_id) candidates.id, candidates.job_queue_id
                from candidates
               where candidates.job_queue_id is not null
               order by candidates.job_queue_id, candidates.priority, candidates.run_at, candidates.id
            ) as first_in_queue
        ), locked_queues as (
          update {queues} as job_queues
             set locked_by = $1::text, locked_at = now()
            from chosen
           where chosen.job_queue_id is not null
             and job_queues.id = chosen.job_queue_id
        )
        update {jobs} as jobs
           set attempts = jobs.attempts + 1,
               locked_by = $1::text,
               locked_at = now()
          from chosen
         where jobs.id = chosen.id
        returning {claimed}
    """
