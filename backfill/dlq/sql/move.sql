-- The move (backfill/dlq/move.py): permanently failed jobs leave the jobs table and become dead-letter entries,
-- in one statement of data-modifying CTEs; and the clean-up of entries whose requeued job succeeded.
-- Two move statements rather than one with "$2 is null or ...": each gets a plan of its own, so the move of a few
-- given ids (after every final failure) always uses the primary key, whatever the plan cache decides. Both take
-- $1 the most jobs to move; move_ids also $2 the job ids.

-- part: failed_unlocked_jobs
-- The jobs the move may take, before its selection, order and lock (the "doomed" CTE).
select jobs.id,
       coalesce(t.identifier, 'task#' || jobs.task_id::text) as task_identifier,
       q.queue_name
  from @schema@._private_jobs as jobs
  left join @schema@._private_tasks as t on t.id = jobs.task_id
  left join @schema@._private_job_queues as q on q.id = jobs.job_queue_id
 where jobs.attempts >= jobs.max_attempts
   and jobs.locked_at is null

-- part: move_doomed
-- The rest of the move, after the CTE "doomed" chose the jobs: delete them and their error history, write or
-- update their entries, keep the outcome of those that asked for it, and return one row per job deleted.
moved as (
  delete from @schema@._private_jobs as jobs
   using doomed
   where jobs.id = doomed.id
     and jobs.attempts >= jobs.max_attempts
     and jobs.locked_at is null
  returning jobs.id, jobs.payload, jobs.priority, jobs.run_at, jobs.attempts, jobs.max_attempts,
            jobs.last_error, jobs.created_at, jobs.updated_at, jobs.key, jobs.flags,
            doomed.task_identifier, doomed.queue_name
), kept as (
  -- A job that asked to keep its outcome (its flag) and was failed for good by something that kept none: a Node
  -- worker, an operator, the sweeper's poison rule. Its outcome comes from the row (updated_at: when it failed, or
  -- a bound on it), and its waiters are told. One a backfill worker kept already, with the exception, stays.
  insert into @schema@.backfill_job_results as results
         (job_id, task_identifier, queue_name, job_key, state, error, attempts, max_attempts, created_at,
          finished_at, expires_at)
  select j.id, j.task_identifier, j.queue_name, j.key, 'failed', j.last_error, j.attempts, j.max_attempts,
         j.created_at, j.updated_at, now() + retention.seconds * interval '1 second'
    from moved as j
   cross join lateral (select @part:flag_retention@ as seconds) as retention
   where retention.seconds > 0
  on conflict (job_id) do nothing
  returning pg_notify('backfill:results', results.job_id::text)
), history as (
  delete from @schema@.backfill_job_errors as errors
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
         nullif(moved.flags - looked.dlq_flags, '{}'::jsonb) as flags,
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
         (select min(substr(flag, @dlq_entry_id_start@)::bigint) from unnest(looked.dlq_flags) as flag)
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
            -- The dead-letter flags, of the shape the move accepts (dlq_flag_pattern: a hand-written
            -- "backfill:dlq=abc" must not fail the cast and with it every move of its batch). Flags are an
            -- object of {"flag": true} as Graphile writes them; a row whose flags are something else (raw
            -- SQL) is moved with them as they are rather than failing the functions that need an object.
            case when jsonb_typeof(moved.flags) = 'object' then
              array(select f.key from jsonb_each(moved.flags) as f where f.key ~ @dlq_flag_pattern@)
            else '{}'::text[] end as dlq_flags
   ) as looked
), returning_to as (
  -- Locked before deciding between update and insert: a concurrent delete either finished first
  -- (the row is skipped here and the job gets a new entry) or waits for us.
  select entry.id from @schema@.backfill_dlq as entry
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
  update @schema@.backfill_dlq as entry
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
  insert into @schema@.backfill_dlq (
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

-- name: move_all
-- Taken in id order with "for update skip locked": two movers share the work instead of queueing behind each
-- other, and a job being failed, rescheduled or completed right now is skipped and picked up next time.
with doomed as (
  @part:failed_unlocked_jobs@
   order by jobs.id
   limit $1::int
     for update of jobs skip locked
), @part:move_doomed@

-- name: move_ids
with doomed as (
  @part:failed_unlocked_jobs@
     and jobs.id = any($2::bigint[])
   order by jobs.id
   limit $1::int
     for update of jobs skip locked
), @part:move_doomed@

-- name: forget_succeeded
-- $1 entry ids and $2 the ids of their requeued jobs, which succeeded on a backfill worker: the entry has
-- nothing left to say. Fenced by the job id, so an entry requeued again meanwhile (another job) is kept.
delete from @schema@.backfill_dlq as entry
 using unnest($1::bigint[], $2::bigint[]) as done(entry_id, job_id)
 where entry.id = done.entry_id
   and entry.state = 'requeued'
   and entry.requeued_job_id = done.job_id
returning entry.id

-- name: forget_finished_requeues
-- Requeued entries whose job is gone and did not come back: it succeeded (on any worker, Node's included) or
-- was deleted by hand. A job that died again was moved back in the same transaction that deleted it, so no
-- snapshot shows it gone while its entry still says 'requeued'. At most gc_batch per statement.
delete from @schema@.backfill_dlq as entry
 where entry.state = 'requeued'
   and not exists (select 1 from @schema@._private_jobs as jobs where jobs.id = entry.requeued_job_id)
   and entry.id in (
     select finished.id from @schema@.backfill_dlq as finished
      where finished.state = 'requeued'
        and not exists (select 1 from @schema@._private_jobs as jobs where jobs.id = finished.requeued_job_id)
      limit @gc_batch@
   )
returning entry.id
