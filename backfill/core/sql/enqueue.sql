-- Adding jobs through Graphile's own SQL functions (EnqueueSql in backfill/core/enqueue.py). Task and queue names
-- cannot be joined in the same statement: the tasks and queues that add_job registers are invisible to the
-- calling statement's snapshot, so Python knows them from the specs or reads them with names_of.

-- name: add_job
-- $1..$9 in the order of enqueue.add_job_arguments (and of enqueue._ADD_JOB_FIELDS, which names them in
-- errors); DB-API drivers get this text with each $n, in order, as %s.
select @part:job_columns@
  from @schema@.add_job(
    identifier => $1::text, payload => $2::json, queue_name => $3::text,
    run_at => $4::timestamptz, max_attempts => $5::int, job_key => $6::text,
    priority => $7::int, flags => $8::text[], job_key_mode => $9::text
  ) as j
 where j.id is not null

-- part: add_jobs_call
-- Graphile's add_jobs over $1, the specs as one JSON array of job_spec_fields arrays
-- (enqueue.job_spec_json_fields): one parameter for asyncpg to encode instead of eight arrays checked element
-- by element, and no introspection of the composite type. $2 job_key_preserve_run_at.
@schema@.add_jobs(
  array(
    select row(@part:job_spec_fields@)::@schema@.job_spec
      from jsonb_array_elements($1::jsonb) with ordinality as specs(spec, position)
     order by specs.position
  ),
  $2::boolean
) as j

-- name: add_jobs
-- The jobs written, for callers who want them back.
select @part:job_columns@
  from @part:add_jobs_call@

-- name: add_jobs_counted
-- Only how many jobs were written (add_jobs(returning=False)): the rows stay in the server, so neither side
-- spends time on sending or decoding them.
select count(*)::int from @part:add_jobs_call@

-- name: names_of
-- Task identifiers ($1 task ids) and queue names ($2 queue ids) of jobs just added, in a second statement.
select 'task' as kind, id, identifier as name from @schema@._private_tasks
 where id = any($1::int[])
union all
select 'queue', id, queue_name from @schema@._private_job_queues where id = any($2::int[])
