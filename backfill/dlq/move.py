"""The move: permanently failed jobs leave the jobs table and become dead-letter entries, in one statement.

One statement (data-modifying CTEs) deletes the jobs, deletes their error history and writes the entries,
and each batch runs in an explicit transaction, so whatever happens to the process or its connection, a job
is either still in ``_private_jobs`` or in ``backfill_dlq``: never both, never neither. The transaction is
explicit on purpose: a client killed while its statement waits leaves the backend without a COMMIT to read,
so it rolls back, whereas an implicit transaction would commit as soon as the statement ended.

What is moved: unlocked jobs with ``attempts >= max_attempts`` (JobState's "failed"), whoever failed them —
a backfill worker (its every error is in ``backfill_job_errors``) or a Node worker (only ``last_error`` and
``updated_at`` on the row). A running job whose attempts were used up (``add_job`` with its key, or
``remove_job``, disarm a running job that way) is left alone until its worker lets go of it.

Each batch takes at most ``limit`` jobs in id order with ``for update skip locked``: two movers (several
runner processes) share the work instead of queueing behind each other, and a job being failed, rescheduled
or completed right now is skipped and picked up next time.

The entry's errors are the job's history rows in the order they were written, plus one made from the row
itself when its last failure is not in the history (a Node attempt: the history's last attempt or error
differs from the row's). A job carrying ``backfill:dlq=<entry id>`` (a requeue) goes back to that entry:
its new errors are appended and the entry is ``dead`` again. If the entry was deleted meanwhile, a new
entry is written instead: the entry is locked (``for update``) before deciding, so a delete cannot slip in
between and make the job vanish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from backfill.core.db import Executor
from backfill.core.errors import BackfillError
from backfill.core.flags import parse_flags
from backfill.core.jobs import decode_json
from backfill.core.schema import SchemaName
from backfill.dlq.migrations import DLQ_TABLE
from backfill.dlq.models import DLQ_FLAG_PREFIX, MovedJob, Reason

# Jobs per move statement. Big enough that a backlog of thousands moves in a few round trips, small enough
# that one statement's row locks and WAL stay modest and a crash redoes little.
MOVE_BATCH = 500
# Finished requeues forgotten per statement (see forget_finished_requeues).
GC_BATCH = 1000

# The flag's shape the move accepts: a hand-written "backfill:dlq=abc" must not fail the cast and with it
# every move of its batch, so anything else is treated as an ordinary flag.
_FLAG_PATTERN = f"^{DLQ_FLAG_PREFIX}[0-9]{{1,18}}$"


@dataclass(frozen=True, slots=True)
class _Statements:
    move_all: str
    move_ids: str
    forget_succeeded: str
    forget_finished_requeues: str


@cache
def _statements(schema: SchemaName) -> _Statements:
    jobs = schema.qualify("_private_jobs")
    tasks = schema.qualify("_private_tasks")
    queues = schema.qualify("_private_job_queues")
    errors = schema.qualify("backfill_job_errors")
    dlq = schema.qualify(DLQ_TABLE)
    prefix_length = len(DLQ_FLAG_PREFIX)
    # Flags are an object of {"flag": true} as Graphile writes them; a row whose flags are something else
    # (raw SQL) is moved with them as they are rather than failing the functions that need an object.
    dlq_flag_keys = f"""
        case when jsonb_typeof(moved.flags) = 'object' then
          array(select f.key from jsonb_each(moved.flags) as f where f.key ~ '{_FLAG_PATTERN}')
        else '{{}}'::text[] end
    """
    # Two texts rather than one with "$1 is null or ...": each gets a plan of its own, so the move of a few
    # given ids (after every final failure) always uses the primary key, whatever the plan cache decides.
    move_template = f"""
        with doomed as (
          select jobs.id,
                 coalesce(t.identifier, 'task#' || jobs.task_id::text) as task_identifier,
                 q.queue_name
            from {jobs} as jobs
            left join {tasks} as t on t.id = jobs.task_id
            left join {queues} as q on q.id = jobs.job_queue_id
           where jobs.attempts >= jobs.max_attempts
             and jobs.locked_at is null
             {{selection}}
           order by jobs.id
           limit $1::int
             for update of jobs skip locked
        ), moved as (
          delete from {jobs} as jobs
           using doomed
           where jobs.id = doomed.id
             and jobs.attempts >= jobs.max_attempts
             and jobs.locked_at is null
          returning jobs.id, jobs.payload, jobs.priority, jobs.run_at, jobs.attempts, jobs.max_attempts,
                    jobs.last_error, jobs.created_at, jobs.updated_at, jobs.key, jobs.flags,
                    doomed.task_identifier, doomed.queue_name
        ), history as (
          delete from {errors} as errors
           using moved
           where errors.job_id = moved.id
          returning errors.id, errors.job_id, errors.attempt, errors.error, errors.permanent, errors.failed_at,
                    errors.exception_type, errors.traceback
        ), told as (
          -- By history id, not attempt: a job given a fresh start (reschedule attempts => 0) counts again.
          select history.job_id,
                 jsonb_agg(
                   jsonb_build_object(
                     'attempt', history.attempt, 'error', history.error, 'failed_at', history.failed_at,
                     'permanent', history.permanent, 'job_id', history.job_id,
                     'exception_type', history.exception_type
                   ) order by history.id
                 ) as errors,
                 (array_agg(history.attempt order by history.id desc))[1] as last_attempt,
                 (array_agg(history.error order by history.id desc))[1] as last_error,
                 (array_agg(history.permanent order by history.id desc))[1] as last_permanent,
                 (array_agg(history.exception_type order by history.id desc))[1] as last_exception_type,
                 (array_agg(history.traceback order by history.id desc))[1] as last_traceback,
                 max(history.failed_at) as last_failed_at
            from history
           group by history.job_id
        ), dead as (
          select moved.id, moved.payload, moved.priority, moved.run_at,
                 -- The attempts that ran: a permanent failure set the row's to the maximum, but its history
                 -- row holds the attempt it failed on (a job failed for good at once ran 1 of 8, not 8 of 8).
                 case when looked.recorded then told.last_attempt else moved.attempts end as attempts,
                 moved.max_attempts,
                 moved.last_error, moved.created_at, moved.key, moved.task_identifier, moved.queue_name,
                 nullif(moved.flags - looked.dlq_flags, '{{}}'::jsonb) as flags,
                 coalesce(told.errors, '[]'::jsonb) || case
                   when looked.recorded then '[]'::jsonb
                   else jsonb_build_array(jsonb_build_object(
                     'attempt', moved.attempts, 'error', moved.last_error, 'failed_at', looked.untold_at,
                     'permanent', null, 'job_id', moved.id, 'exception_type', null
                   ))
                 end as errors,
                 case when looked.recorded and told.last_permanent then 'permanent_failure'
                      else 'attempts_exhausted' end as reason,
                 case when looked.recorded then told.last_failed_at else looked.untold_at end as failed_at,
                 -- The last failure's, when it is in the history (a Node worker's attempt has neither).
                 case when looked.recorded then told.last_exception_type end as exception_type,
                 case when looked.recorded then told.last_traceback end as traceback,
                 (select min(substr(flag, {prefix_length + 1})::bigint) from unnest(looked.dlq_flags) as flag)
                   as entry_id
            from moved
            left join told on told.job_id = moved.id
           cross join lateral (
             -- A permanent failure records the attempt that ran, while the row's attempts jumped to the
             -- maximum; its error still matches the row's.
             select (told.last_attempt is not distinct from moved.attempts or told.last_permanent is true)
                      and told.last_error is not distinct from moved.last_error as recorded,
                    -- Node's fail leaves updated_at alone, so it is only a lower bound; after the history's
                    -- last time at least, so the errors stay in time order.
                    greatest(moved.updated_at, told.last_failed_at) as untold_at,
                    {dlq_flag_keys} as dlq_flags
           ) as looked
        ), returning_to as (
          -- Locked before deciding between update and insert: a concurrent delete either finished first
          -- (the row is skipped here and the job gets a new entry) or waits for us.
          select entry.id from {dlq} as entry
           where entry.id in (select dead.entry_id from dead)
             for update
        ), chosen as (
          -- Two dead jobs naming one entry (a hand-copied flag): one goes back to it, the other gets its own,
          -- because one update cannot take both and the second job would be lost.
          select dead.*,
                 coalesce(dead.entry_id in (select returning_to.id from returning_to), false)
                   and row_number() over (partition by dead.entry_id order by dead.id) = 1 as goes_back
            from dead
        ), updated as (
          update {dlq} as entry
             set task_identifier = chosen.task_identifier,
                 payload = chosen.payload,
                 queue_name = chosen.queue_name,
                 priority = chosen.priority,
                 job_key = chosen.key,
                 flags = chosen.flags,
                 attempts = chosen.attempts,
                 max_attempts = chosen.max_attempts,
                 errors = entry.errors || chosen.errors,
                 last_error = chosen.last_error,
                 reason = chosen.reason,
                 failed_at = chosen.failed_at,
                 exception_type = chosen.exception_type,
                 traceback = chosen.traceback,
                 state = 'dead',
                 requeued_job_id = null,
                 updated_at = now()
            from chosen
           where chosen.goes_back
             and entry.id = chosen.entry_id
          returning entry.id as entry_id, chosen.id as job_id, chosen.task_identifier, chosen.priority,
                    chosen.flags, chosen.reason, true as returned
        ), inserted as (
          insert into {dlq} (
            job_id, task_identifier, payload, queue_name, priority, job_key, flags, attempts, max_attempts,
            errors, last_error, reason, created_at, run_at, failed_at, exception_type, traceback
          )
          select chosen.id, chosen.task_identifier, chosen.payload, chosen.queue_name, chosen.priority,
                 chosen.key, chosen.flags, chosen.attempts, chosen.max_attempts, chosen.errors,
                 chosen.last_error, chosen.reason, chosen.created_at, chosen.run_at, chosen.failed_at,
                 chosen.exception_type, chosen.traceback
            from chosen
           where not chosen.goes_back
           order by chosen.id
          returning id as entry_id, job_id, task_identifier, priority, flags, reason, false as returned
        )
        -- One row per job deleted; entry_id is null only if a job was deleted and not written (a bug): the
        -- caller then rolls the transaction back instead of committing a lost job.
        select chosen.id as job_id, written.entry_id, chosen.task_identifier, chosen.priority,
               chosen.flags::text as flags, chosen.reason, coalesce(written.returned, false) as returned
          from chosen
          left join (select * from updated union all select * from inserted) as written
            on written.job_id = chosen.id
         order by chosen.id
    """
    return _Statements(
        move_all=move_template.replace("{selection}", ""),
        move_ids=move_template.replace("{selection}", "and jobs.id = any($2::bigint[])"),
        # A requeued job succeeded on a backfill worker: its entry has nothing left to say. Fenced by the
        # job id, so an entry requeued again meanwhile (another job) is kept.
        forget_succeeded=f"""
            delete from {dlq} as entry
             using unnest($1::bigint[], $2::bigint[]) as done(entry_id, job_id)
             where entry.id = done.entry_id
               and entry.state = 'requeued'
               and entry.requeued_job_id = done.job_id
            returning entry.id
        """,
        # Requeued entries whose job is gone and did not come back: it succeeded (on any worker, Node's
        # included) or was deleted by hand. A job that died again was moved back in the same transaction
        # that deleted it, so no snapshot shows it gone while its entry still says 'requeued'.
        forget_finished_requeues=f"""
            delete from {dlq} as entry
             where entry.state = 'requeued'
               and not exists (select 1 from {jobs} as jobs where jobs.id = entry.requeued_job_id)
               and entry.id in (
                 select finished.id from {dlq} as finished
                  where finished.state = 'requeued'
                    and not exists (select 1 from {jobs} as jobs where jobs.id = finished.requeued_job_id)
                  limit {GC_BATCH}
               )
            returning entry.id
        """,
    )


class LostJobError(BackfillError):
    """The move deleted a job it did not write to the dead-letter table; its transaction was rolled back."""


async def move_batch(
    connection: Executor, schema: SchemaName, *, job_ids: Sequence[int] | None, limit: int = MOVE_BATCH
) -> list[MovedJob]:
    """Move up to ``limit`` permanently failed, unlocked jobs (only ``job_ids`` if given), in one transaction."""
    async with connection.transaction():
        statements = _statements(schema)
        if job_ids is None:
            rows = await connection.fetch(statements.move_all, limit)
        else:
            rows = await connection.fetch(statements.move_ids, limit, list(job_ids))
        lost = [row["job_id"] for row in rows if row["entry_id"] is None]
        if lost:
            raise LostJobError(f"the dead-letter move deleted jobs {lost} without writing them; rolled back")
    return [
        MovedJob(
            entry_id=row["entry_id"],
            job_id=row["job_id"],
            task_identifier=row["task_identifier"],
            priority=row["priority"],
            flags=_flag_set(row["flags"]),
            reason=Reason(row["reason"]),
            returned=row["returned"],
        )
        for row in rows
    ]


async def forget_succeeded(connection: Executor, schema: SchemaName, done: Sequence[tuple[int, int]]) -> list[int]:
    """Delete the entries of requeued jobs that succeeded, given as ``(entry id, job id)``; the ids deleted."""
    if not done:
        return []
    rows = await connection.fetch(
        _statements(schema).forget_succeeded, [entry for entry, _ in done], [job for _, job in done]
    )
    return [row["id"] for row in rows]


async def forget_finished_requeues(connection: Executor, schema: SchemaName) -> list[int]:
    """Delete up to :data:`GC_BATCH` requeued entries whose job no longer exists; the ids deleted."""
    rows = await connection.fetch(_statements(schema).forget_finished_requeues)
    return [row["id"] for row in rows]


def _flag_set(flags: object) -> frozenset[str]:
    # Lenient, unlike a claim: the move keeps whatever raw SQL wrote (see dlq_flag_keys) and must report it.
    decoded = decode_json(flags)
    return parse_flags(decoded) if isinstance(decoded, dict) else frozenset()
