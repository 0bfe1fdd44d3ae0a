-- Acting on jobs and cleaning up (ActionSql in backfill/core/admin/utils.py), through Graphile's own SQL functions
-- where it has them, so that they behave exactly as Node's utilities do: a job locked by a worker (within
-- Graphile's 4-hour lock expiry) is left alone and not returned. Each returns the rows the function returned,
-- with names joined in, in id order.

-- name: complete_jobs
-- $1 job ids.
select @part:named_job_columns@
  from @schema@.complete_jobs($1::bigint[]) as j
@part:returned_rows@

-- name: permanently_fail_jobs
-- $1 job ids, $2 the reason (null: Graphile's default text).
select @part:named_job_columns@
  from @schema@.permanently_fail_jobs($1::bigint[], $2::text) as j
@part:returned_rows@

-- name: reschedule_jobs
-- $1 job ids, $2 run_at, $3 priority, $4 attempts, $5 max_attempts (each null: unchanged).
select @part:named_job_columns@
  from @schema@.reschedule_jobs($1::bigint[], $2::timestamptz, $3::int, $4::int, $5::int) as j
@part:returned_rows@

-- name: remove_job
-- $1 job key. remove_job returns one composite, all-null when no job has the key: hence `where j.id is not null`.
select @part:named_job_columns@
  from @schema@.remove_job($1::text) as j
@part:returned_rows@

-- part: returned_rows
-- What follows "from <function>(...) as j": the names joined in, the rows in id order.
@part:job_name_joins@
 where j.id is not null
 order by j.id

-- name: force_unlock_workers
-- $1 worker ids.
select @schema@.force_unlock_workers($1::text[])

-- name: delete_permafailed_jobs
-- >= rather than Graphile's =: a job rescheduled to fewer max_attempts than it already made is just as
-- permanently failed (no worker picks it up), and JobState calls it failed too.
with deleted as (
  delete from @schema@._private_jobs as j where j.attempts >= j.max_attempts and j.locked_at is null returning 1
) select count(*) from deleted

-- name: gc_task_identifiers
-- $1 task identifiers to keep even without jobs.
with deleted as (
  delete from @schema@._private_tasks as t
   where not exists (select 1 from @schema@._private_jobs as j where j.task_id = t.id)
     and t.identifier <> all ($1::text[])
  returning 1
) select count(*) from deleted

-- name: gc_job_queues
with deleted as (
  delete from @schema@._private_job_queues as q
   where q.locked_at is null and not exists (select 1 from @schema@._private_jobs as j where j.job_queue_id = q.id)
  returning 1
) select count(*) from deleted
