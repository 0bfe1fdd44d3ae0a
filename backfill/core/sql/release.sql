-- Giving claims back (ReleaseSql in backfill/core/run/queries.py): a job completed, failed or returned unstarted,
-- orphans released after a reconnect, and Graphile's four-hour rule for locks whose owner vanished.
--
-- Every write after a claim is fenced by the claim itself: locked_by = <this worker's id> and locked_at = <the
-- locked_at the claim wrote>, passed per job (queries.py says why locked_at and not attempts). A job whose lock
-- was taken away is left alone, and the ids returned tell the caller which jobs it no longer owned.

-- name: complete_jobs
-- $1 job ids, $2 worker id, $3 the locked_at of each job's claim.
with released as (
  delete from @schema@._private_jobs as jobs
   using unnest($1::bigint[], $3::timestamptz[]) as claim(id, locked_at)
   where @part:claim_fence@
  returning jobs.id, jobs.job_queue_id
)@part:unlock_released_queues@

-- name: complete_jobs_keeping_results
-- complete_jobs for jobs whose outcome is kept (a task's keep_result, or the flag backfill:result=<seconds>): the
-- same delete, and their rows of backfill_job_results in the same statement. Used only for a batch that holds
-- such a job, so jobs that keep nothing pay nothing for the feature.
-- $1 job ids, $2 worker id, $3 the locked_at of each job's claim, $4 states ('succeeded' or 'cancelled'),
-- $5 return values (json; null: none kept), $6 notes (why the value was not kept, or the cancellation's reason),
-- $7 durations of the attempts in seconds, $8 retentions in seconds.
with released as (
  delete from @schema@._private_jobs as jobs
   using unnest($1::bigint[], $3::timestamptz[], $4::text[], $5::json[], $6::text[], $7::float8[], $8::float8[])
         as claim(id, locked_at, state, result, note, duration, retention)
   where @part:claim_fence@
  returning jobs.id, jobs.job_queue_id, jobs.task_id, jobs.key, jobs.attempts, jobs.max_attempts, jobs.created_at,
            claim.locked_at, claim.state, claim.result, claim.note, claim.duration, claim.retention
), ended as (
  select * from released
)@part:keep_outcomes@@part:unlock_released_queues@

-- name: fail_jobs
-- $1 job ids, $2 messages (last_error), $3 replacement payloads (json, null: keep), $4 permanent?, $5 retry
-- delays in seconds (null: Graphile's backoff), $6 worker id, $7 the locked_at of each job's claim, $8 the
-- attempt each claim ran, $9 exception types, $10 tracebacks, $11 result retentions in seconds (null: none kept).
-- Graphile's backoff: the next attempt waits exp(min(attempts, 10)) seconds (e^1 ≈ 2.7 s after the first
-- failure, capped at e^10 ≈ 6 h), unless the worker chose a delay (a retry policy, or an interrupted job); that
-- delay counts from the database's clock, so app clock skew is moot. A permanent failure uses up the remaining
-- attempts. A replacement payload (batch jobs) keeps only the items that failed. Every failure's error is also
-- kept in backfill_job_errors, in the same statement (the dead-letter queue shows them all), with its exception
-- type and traceback, which Graphile's jobs table has no room for. A job that asked to keep its outcome and has
-- now failed for good gets its row of backfill_job_results.
with released as (
  update @schema@._private_jobs as jobs
     set last_error = claim.message,
         run_at = case
           when claim.retry_delay is not null then now() + claim.retry_delay * interval '1 second'
           else greatest(now(), jobs.run_at) + exp(least(jobs.attempts, 10)) * interval '1 second'
         end,
         attempts = case when claim.permanent then jobs.max_attempts else jobs.attempts end,
         payload = coalesce(claim.payload, jobs.payload),
         -- An attempt that ended, even in failure, did not kill its worker: no longer a suspect.
         flags = case
           when jobs.flags ? @suspect_flag@ then nullif(jobs.flags - @suspect_flag@, '{}'::jsonb)
           else jobs.flags
         end,
         locked_by = null,
         locked_at = null
    from unnest(
           $1::bigint[], $2::text[], $3::json[], $4::boolean[], $5::float8[], $7::timestamptz[],
           $8::int[], $9::text[], $10::text[], $11::float8[]
         ) as claim(id, message, payload, permanent, retry_delay, locked_at, attempt, error_type, tb, retention)
   where @part:claim_fence($2=$6)@
  returning jobs.id, jobs.job_queue_id, jobs.last_error, claim.permanent, claim.attempt, claim.error_type, claim.tb,
            jobs.task_id, jobs.key, jobs.attempts, jobs.max_attempts, jobs.created_at, claim.locked_at,
            claim.retention
), history as (
  -- The attempt that ran (as claimed), not the column: a permanent failure has just set that to max_attempts.
  insert into @schema@.backfill_job_errors (job_id, attempt, error, permanent, exception_type, traceback)
  select released.id, released.attempt, released.last_error, released.permanent, released.error_type, released.tb
    from released
), ended as (
  -- Failed for good (no attempt left, the column as just written) and asked to keep its outcome.
  select released.id, released.job_queue_id, released.task_id, released.key, released.attempts,
         released.max_attempts, released.created_at, released.locked_at, 'failed' as state, null::json as result,
         released.last_error as note, null::float8 as duration, released.retention
    from released
   where released.retention is not null
     and released.attempts >= released.max_attempts
)@part:keep_outcomes@@part:unlock_released_queues($2=$6)@

-- name: return_jobs
-- $1 job ids, $2 worker id, $3 the locked_at of each job's claim.
-- Jobs claimed but never started (shutdown, or dropped from the local queue) get their attempt back: they did
-- not run, so they must not move closer to permanent failure.
with released as (
  update @schema@._private_jobs as jobs
     set attempts = greatest(0, jobs.attempts - 1),
         locked_by = null,
         locked_at = null
    from unnest($1::bigint[], $3::timestamptz[]) as claim(id, locked_at)
   where @part:claim_fence@
  returning jobs.id, jobs.job_queue_id
)@part:unlock_released_queues@

-- part: claim_fence
-- The fence of every write after a claim, over the job row "jobs" and the row "claim" of the unnested arguments
-- (its id and the locked_at its claim wrote): the row is still locked by this worker ($2; fail_jobs numbers it $6)
-- under that very claim.
jobs.id = claim.id
and jobs.locked_by = $2::text
and jobs.locked_at = claim.locked_at

-- part: keep_outcomes
-- The outcomes of the jobs in the CTE "ended" (id, job_queue_id, task_id, key, attempts, max_attempts, created_at,
-- locked_at, state, result, note, duration, retention), kept in backfill_job_results until now() + retention, and
-- one notification per job on backfill:results for the callers waiting on it (BackfillClient.wait). The
-- notification is in RETURNING: a data-modifying CTE runs to completion whether or not anything reads it, which
-- a plain SELECT of pg_notify would not. An outcome kept already (a job failed for good, retried by hand, now
-- done) is replaced.
, kept as (
  insert into @schema@.backfill_job_results as results
         (job_id, task_identifier, queue_name, job_key, state, result, error, attempts, max_attempts, created_at,
          started_at, finished_at, duration, expires_at)
  select ended.id, tasks.identifier, job_queues.queue_name, ended.key, ended.state, ended.result, ended.note,
         ended.attempts, ended.max_attempts, ended.created_at, ended.locked_at, now(), ended.duration,
         now() + ended.retention * interval '1 second'
    from ended
    join @schema@._private_tasks as tasks on tasks.id = ended.task_id
    left join @schema@._private_job_queues as job_queues on job_queues.id = ended.job_queue_id
  on conflict (job_id) do update
     set task_identifier = excluded.task_identifier, queue_name = excluded.queue_name, job_key = excluded.job_key,
         state = excluded.state, result = excluded.result, error = excluded.error, attempts = excluded.attempts,
         max_attempts = excluded.max_attempts, created_at = excluded.created_at, started_at = excluded.started_at,
         finished_at = excluded.finished_at, duration = excluded.duration, expires_at = excluded.expires_at
  returning pg_notify('backfill:results', results.job_id::text)
)

-- part: unlock_released_queues
-- The tail of complete, fail and return: unlock the named queues of the jobs that the CTE "released" gave back,
-- fenced by our worker id ($2; fail_jobs numbers it $6), and return the ids it touched. The fence is the
-- parameter rather than a column of "released" (which would spare the renumbering): compared with a column, the
-- planner hashes the queues table instead of filtering it by the parameter.
, unlocked as (
  update @schema@._private_job_queues as job_queues
     set locked_by = null, locked_at = null
    from released
   where released.job_queue_id is not null
     and job_queues.id = released.job_queue_id
     and job_queues.locked_by = $2::text
)
select id from released

-- name: release_orphans
-- $1 worker id, $2 the ids of the jobs we own (a runner, the local queue or a pending result holds them).
-- After a reconnect: rows still locked by us that nobody owns were claimed by a fetch whose reply never arrived.
-- Nobody will ever run or release them, so hand them back now (they never started: refund the attempt) instead
-- of after 4 hours. Queue locks of ours that guard none of the owned jobs are orphans of the same kind.
with orphans as (
  update @schema@._private_jobs as jobs
     set attempts = greatest(0, jobs.attempts - 1), locked_by = null, locked_at = null
   where jobs.locked_by = $1::text
     and not (jobs.id = any($2::bigint[]))
  returning jobs.id
), orphan_queues as (
  update @schema@._private_job_queues as job_queues
     set locked_by = null, locked_at = null
   where job_queues.locked_by = $1::text
     and not exists (
       select 1 from @schema@._private_jobs as owned
        where owned.job_queue_id = job_queues.id
          and owned.locked_by = $1::text
          and owned.id = any($2::bigint[])
     )
  returning job_queues.id
)
select array(select id from orphans) as jobs, (select count(*) from orphan_queues) as queues

-- name: release_stale_locks
-- Graphile's last resort for locks whose owner vanished: four hours is long enough that no live Node worker still
-- holds such a job, so the rule is safe for rows we do not own.
with stale_jobs as (
  update @schema@._private_jobs as jobs
     set locked_at = null, locked_by = null, run_at = greatest(jobs.run_at, now())
   where jobs.locked_at < now() - interval '4 hours'
  returning 1
), stale_queues as (
  update @schema@._private_job_queues as job_queues
     set locked_at = null, locked_by = null
   where job_queues.locked_at < now() - interval '4 hours'
  returning 1
)
select (select count(*) from stale_jobs) as jobs, (select count(*) from stale_queues) as queues
