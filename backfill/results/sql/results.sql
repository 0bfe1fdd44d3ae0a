-- Reading job outcomes (backfill/results/reader.py). The worker writes them (core/sql/release.sql, keep_outcomes)
-- to backfill_job_results; a job that has not ended is still a row of Graphile's jobs table.

-- name: outcomes
-- $1 job ids. One row per id: its kept outcome, else what its job row says (queued, running, failed for good) and
-- whether the job asked to keep its outcome (the flag backfill:result=<seconds>), else nothing at all.
select asked.id as job_id,
       kept.task_identifier, kept.queue_name, kept.job_key, kept.state, kept.result, kept.error, kept.attempts,
       kept.max_attempts, kept.created_at, kept.started_at, kept.finished_at, kept.duration, kept.expires_at,
       jobs.id is not null as queued,
       jobs.locked_at is not null as running,
       jobs.attempts as job_attempts,
       jobs.max_attempts as job_max_attempts,
       jobs.last_error as job_last_error,
       jobs.created_at as job_created_at,
       jobs.key as job_key_now,
       tasks.identifier as job_task,
       job_queues.queue_name as job_queue,
       exists (select 1 from jsonb_object_keys(jobs.flags) as flag where flag like @result_flag_prefix@ || '%')
         as job_keeps
  from unnest($1::bigint[]) as asked(id)
  left join @schema@.backfill_job_results as kept on kept.job_id = asked.id
  left join @schema@._private_jobs as jobs on kept.job_id is null and jobs.id = asked.id
  left join @schema@._private_tasks as tasks on tasks.id = jobs.task_id
  left join @schema@._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id

-- part: flag_retention
-- The result retention (seconds) the job row "j" asks for in its flags, backfill:result=<seconds>, at most a year;
-- null when it has none, or one that is not a number (written by hand), which keeps nothing rather than failing
-- the statement that reads it (an operator's cancellation, the dead-letter move).
(select least(substr(flag, length(@result_flag_prefix@) + 1)::float8, @max_retention@)
   from jsonb_object_keys(j.flags) as flag
  where flag like @result_flag_prefix@ || '%'
    and substr(flag, length(@result_flag_prefix@) + 1) ~ '^[0-9]+(\.[0-9]*)?(e[+-]?[0-9]{1,2})?$'
  limit 1)
