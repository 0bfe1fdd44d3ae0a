-- The Django backend's own reads (backfill/integrations/django/results.py), run on Django's connection through
-- its DB-API cursor, so numbered for it with dbapi_form.

-- name: live_job
-- $1 a job id. Its row as a TaskResult shows it: from the private table, since the public jobs view leaves the
-- payload out (the TaskResult's args and kwargs).
select tasks.identifier, jobs.payload::text, jobs.attempts, jobs.max_attempts, jobs.last_error, jobs.created_at,
       jobs.locked_at, jobs.locked_by
  from @schema@._private_jobs as jobs
  join @schema@._private_tasks as tasks on tasks.id = jobs.task_id
 where jobs.id = $1::bigint
