-- The public SQL API of the Graphile Worker schema at revision 20: the same names, argument names,
-- defaults, return types, languages and strictness as graphile-worker@0.18.0, so callers (Node, SQL
-- triggers, backfill) can use either implementation. Every statement is `create or replace`, so this file
-- serves both a fresh install and the upgrade to revision 20.
--
-- `@schema@` is replaced by the quoted schema name before this runs.
--
-- "Four hours" below is Graphile's lease: a job locked more recently than that is presumed to be running
-- somewhere, so the administrative functions leave it alone.

create or replace function @schema@.add_jobs(
  specs @schema@.job_spec[],
  job_key_preserve_run_at boolean default false
) returns setof @schema@._private_jobs
language plpgsql
as $body$
begin
  -- Register unknown task identifiers and queue names. The "where not exists" guard comes first so that a
  -- name that is already known does not burn an identity value on a conflicting insert.
  insert into @schema@._private_tasks (identifier)
    select distinct s.identifier
      from unnest(specs) as s
     where not exists (select 1 from @schema@._private_tasks as t where t.identifier = s.identifier)
  on conflict do nothing;

  insert into @schema@._private_job_queues (queue_name)
    select distinct s.queue_name
      from unnest(specs) as s
     where s.queue_name is not null
       and not exists (select 1 from @schema@._private_job_queues as q where q.queue_name = s.queue_name)
  on conflict do nothing;

  -- A keyed job that is running (or has failed for good) describes an out-of-date world: keep it from
  -- running again by taking its key and its remaining attempts, then insert the new job below.
  update @schema@._private_jobs as existing
     set key = null,
         attempts = existing.max_attempts,
         updated_at = now()
    from unnest(specs) as s
   where s.job_key is not null
     and existing.key = s.job_key
     and existing.is_available is not true;

  -- Counted before the insert, so an upsert that merely updates a waiting job still wakes a worker.
  perform pg_notify(
    'jobs:insert',
    json_build_object('r', random(), 'count', coalesce(array_length(specs, 1), 0))::text
  );

  return query
    insert into @schema@._private_jobs as jobs
      (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
    select
      q.id,
      t.id,
      coalesce(s.payload, '{}'::json),
      coalesce(s.run_at, now()),
      coalesce(s.max_attempts, 25::smallint),
      s.job_key,
      coalesce(s.priority, 0::smallint),
      (select jsonb_object_agg(f.flag, true) from unnest(s.flags) as f(flag))
    from unnest(specs) as s
    inner join @schema@._private_tasks as t on t.identifier = s.identifier
    left join @schema@._private_job_queues as q on q.queue_name = s.queue_name
    on conflict (key) do update set
      job_queue_id = excluded.job_queue_id,
      task_id = excluded.task_id,
      -- Two array payloads under one key accumulate: that is how batch jobs gather their items.
      payload = case
        when json_typeof(jobs.payload) = 'array' and json_typeof(excluded.payload) = 'array'
          then (jobs.payload::jsonb || excluded.payload::jsonb)::json
        else excluded.payload
      end,
      max_attempts = excluded.max_attempts,
      -- preserve_run_at (throttling) keeps the original time only while the job has never been tried.
      run_at = case
        when job_key_preserve_run_at is true and jobs.attempts = 0 then jobs.run_at
        else excluded.run_at
      end,
      priority = excluded.priority,
      revision = jobs.revision + 1,
      flags = excluded.flags,
      attempts = 0,
      last_error = null,
      updated_at = now()
    where jobs.locked_at is null
    returning *;
end;
$body$;

create or replace function @schema@.add_job(
  identifier text,
  payload json default null,
  queue_name text default null,
  run_at timestamptz default null,
  max_attempts int default null,
  job_key text default null,
  priority int default null,
  flags text[] default null,
  job_key_mode text default 'replace'
) returns @schema@._private_jobs
language plpgsql
as $body$
declare
  v_job @schema@._private_jobs;
begin
  -- Argument names shadow column names here, so every argument is written as add_job.<name>.
  if add_job.job_key is null
     or add_job.job_key_mode is null
     or add_job.job_key_mode in ('replace', 'preserve_run_at') then
    select * into v_job
      from @schema@.add_jobs(
        array[row(
          add_job.identifier,
          add_job.payload,
          add_job.queue_name,
          add_job.run_at,
          add_job.max_attempts::smallint,
          add_job.job_key,
          add_job.priority::smallint,
          add_job.flags
        )::@schema@.job_spec],
        add_job.job_key_mode = 'preserve_run_at'
      )
     limit 1;
    return v_job;
  end if;

  if add_job.job_key_mode <> 'unsafe_dedupe' then
    raise exception 'Invalid job_key_mode value, expected ''replace'', ''preserve_run_at'' or ''unsafe_dedupe''.'
      using errcode = 'GWBKM';
  end if;

  -- unsafe_dedupe: if any job holds the key, even a running one, leave it as it is (only its revision
  -- moves, so the caller can tell). The change that triggered this call may then never be acted upon,
  -- which is why the mode carries "unsafe" in its name.
  insert into @schema@._private_tasks (identifier)
    select add_job.identifier
     where not exists (select 1 from @schema@._private_tasks as t where t.identifier = add_job.identifier)
  on conflict do nothing;

  if add_job.queue_name is not null then
    insert into @schema@._private_job_queues (queue_name)
      select add_job.queue_name
       where not exists (
         select 1 from @schema@._private_job_queues as q where q.queue_name = add_job.queue_name
       )
    on conflict do nothing;
  end if;

  insert into @schema@._private_jobs as jobs
    (job_queue_id, task_id, payload, run_at, max_attempts, key, priority, flags)
  select
    q.id,
    t.id,
    coalesce(add_job.payload, '{}'::json),
    coalesce(add_job.run_at, now()),
    coalesce(add_job.max_attempts::smallint, 25::smallint),
    add_job.job_key,
    coalesce(add_job.priority::smallint, 0::smallint),
    (select jsonb_object_agg(f.flag, true) from unnest(add_job.flags) as f(flag))
  from @schema@._private_tasks as t
  left join @schema@._private_job_queues as q on q.queue_name = add_job.queue_name
  where t.identifier = add_job.identifier
  on conflict (key) do update set
    revision = jobs.revision + 1,
    updated_at = now()
  returning * into v_job;

  -- Only a job that was really inserted is news for the workers.
  if v_job.revision = 0 then
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text);
  end if;
  return v_job;
end;
$body$;

create or replace function @schema@.complete_jobs(job_ids bigint[])
returns setof @schema@._private_jobs
language sql
as $body$
  delete from @schema@._private_jobs as jobs
   where jobs.id = any(job_ids)
     and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$body$;

create or replace function @schema@.force_unlock_workers(worker_ids text[])
returns void
language sql
as $body$
  update @schema@._private_jobs as jobs
     set locked_at = null, locked_by = null
   where jobs.locked_by = any(worker_ids);
  update @schema@._private_job_queues as job_queues
     set locked_at = null, locked_by = null
   where job_queues.locked_by = any(worker_ids);
$body$;

create or replace function @schema@.permanently_fail_jobs(job_ids bigint[], error_message text default null)
returns setof @schema@._private_jobs
language sql
as $body$
  update @schema@._private_jobs as jobs
     set last_error = coalesce(error_message, 'Manually marked as failed'),
         attempts = jobs.max_attempts,
         updated_at = now()
   where jobs.id = any(job_ids)
     and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$body$;

create or replace function @schema@.remove_job(job_key text)
returns @schema@._private_jobs
language plpgsql
strict
as $body$
declare
  v_job @schema@._private_jobs;
begin
  delete from @schema@._private_jobs as jobs
   where jobs.key = remove_job.job_key
     and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning * into v_job;

  -- `not (row is null)`: a row is null only when every field is, whereas `row is not null` would need
  -- every field set.
  if not (v_job is null) then
    -- A negative count tells listening workers that nothing new arrived.
    perform pg_notify('jobs:insert', json_build_object('r', random(), 'count', -1)::text);
    return v_job;
  end if;

  -- The job is running: it cannot be deleted under its worker, so stop it from ever running again.
  update @schema@._private_jobs as jobs
     set key = null,
         attempts = jobs.max_attempts,
         updated_at = now()
   where jobs.key = remove_job.job_key
  returning * into v_job;
  return v_job;
end;
$body$;

create or replace function @schema@.reschedule_jobs(
  job_ids bigint[],
  run_at timestamptz default null,
  priority int default null,
  attempts int default null,
  max_attempts int default null
) returns setof @schema@._private_jobs
language sql
as $body$
  update @schema@._private_jobs as jobs
     set run_at = coalesce(reschedule_jobs.run_at, jobs.run_at),
         priority = coalesce(reschedule_jobs.priority::smallint, jobs.priority),
         attempts = coalesce(reschedule_jobs.attempts::smallint, jobs.attempts),
         max_attempts = coalesce(reschedule_jobs.max_attempts::smallint, jobs.max_attempts),
         updated_at = now()
   where jobs.id = any(reschedule_jobs.job_ids)
     and (jobs.locked_at is null or jobs.locked_at < now() - interval '4 hours')
  returning *;
$body$;
