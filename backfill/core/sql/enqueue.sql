-- Adding jobs (EnqueueSql in backfill/core/enqueue.py): jobs with a job key through Graphile's own add_job and
-- add_jobs, jobs without one through insert_job and insert_jobs, which do for them what those functions do.
-- Task and queue names cannot be joined to the rows add_job or add_jobs return: the tasks and queues they
-- register are invisible to the calling statement's snapshot, so Python knows them from the specs or reads
-- them with names_of.

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

-- name: insert_job
-- A job without a job key, written by one statement instead of through add_job: what add_job does for such a
-- job (register the task and the queue, insert with Graphile's defaults, notify jobs:insert with count 1) costs
-- a third of the time without the plpgsql calls and the key handling that does nothing here. Parameters, each
-- once and in order (so the DB-API form works): $1 identifier, $2 payload, $3 queue name, $4 run_at,
-- $5 max_attempts, $6 priority, $7 flags (enqueue.insert_job_arguments).
-- The names are registered as add_job registers them, "where not exists" first so that a known name burns no
-- identity value. A name registered by a concurrent transaction after this statement's snapshot was taken is
-- invisible to the lookups below, so the insert's conflict arm touches it to return its id: the job never lands
-- without its task or outside its queue.
with spec as (
  select $1::text as identifier, $2::json as payload, $3::text as queue_name, $4::timestamptz as run_at,
         $5::int as max_attempts, $6::int as priority, $7::text[] as flags
), new_task as (
  insert into @schema@._private_tasks (identifier)
  select spec.identifier from spec
   where not exists (select 1 from @schema@._private_tasks as t where t.identifier = spec.identifier)
  on conflict (identifier) do update set identifier = excluded.identifier
  returning id
), new_queue as (
  insert into @schema@._private_job_queues (queue_name)
  select spec.queue_name from spec
   where spec.queue_name is not null
     and not exists (select 1 from @schema@._private_job_queues as q where q.queue_name = spec.queue_name)
  on conflict (queue_name) do update set queue_name = excluded.queue_name
  returning id
), j as (
  insert into @schema@._private_jobs (job_queue_id, task_id, payload, run_at, max_attempts, priority, flags)
  select
    case when spec.queue_name is not null then
      coalesce(
        (select new_queue.id from new_queue),
        (select q.id from @schema@._private_job_queues as q where q.queue_name = spec.queue_name)
      )
    end,
    coalesce(
      (select new_task.id from new_task),
      (select t.id from @schema@._private_tasks as t where t.identifier = spec.identifier)
    ),
    coalesce(spec.payload, '{}'::json),
    coalesce(spec.run_at, now()),
    coalesce(spec.max_attempts::smallint, 25::smallint),
    coalesce(spec.priority::smallint, 0::smallint),
    (select jsonb_object_agg(f.flag, true) from unnest(spec.flags) as f(flag))
  from spec
  returning *
), notified as (
  -- A CTE that is not data-modifying runs only when referenced: the join below is what sends it.
  select pg_notify('jobs:insert', json_build_object('r', random(), 'count', 1)::text)
)
select @part:job_columns@
  from j cross join notified

-- part: insert_jobs_call
-- insert_job for a batch of jobs none of which has a job key. What jobs of one batch share is sent once: $2 is
-- one JSON array of shapes, [identifier, queue, max_attempts, priority, flags object] (the flags as the jsonb
-- object Graphile stores, {"flag": true, ...}, or null), and $1 one JSON array of jobs, [shape's position in $2
-- (from 0), payload text, run_at] (enqueue.insert_jobs_arguments). A batch of one task from one client is one
-- shape, so each job's row carries only its own fields: 1.5-3 us less server time a job than one array of
-- whole specs, most where jobs carry flags (1,000-job batches, rolled back). Together a quarter to a third
-- less server time than Graphile's add_jobs for the same jobs, which aggregates flags row by row.
-- Ids follow the batch's order, so ordering by j.id gives the batch's order. The names are registered as in
-- insert_job, once per distinct name. insert_job keeps its one-row form rather than running this over a batch
-- of one: this shape (distinct names, the joins, the sort) cost a single job 10-20% more server CPU (2,000
-- serial enqueues, alternating runs).
with shape as (
  select (position - 1)::int as shape, item->>0 as identifier, item->>1 as queue_name,
         (item->>2)::smallint as max_attempts, (item->>3)::smallint as priority,
         case when jsonb_typeof(item->4) = 'object' then item->4 end as flags
    from jsonb_array_elements($2::jsonb) with ordinality as shapes(item, position)
), spec as (
  select (item->>0)::int as shape, (item->>1)::json as payload, (item->>2)::timestamptz as run_at, position
    from jsonb_array_elements($1::jsonb) with ordinality as items(item, position)
), new_task as (
  insert into @schema@._private_tasks (identifier)
  select distinct shape.identifier from shape
   where not exists (select 1 from @schema@._private_tasks as t where t.identifier = shape.identifier)
   order by shape.identifier  -- new names in one order, so two batches registering the same ones cannot deadlock
  on conflict (identifier) do update set identifier = excluded.identifier
  returning id, identifier
), task as (
  select t.id, t.identifier from @schema@._private_tasks as t
   where t.identifier in (select shape.identifier from shape)
  union all
  select new_task.id, new_task.identifier from new_task
), new_queue as (
  insert into @schema@._private_job_queues (queue_name)
  select distinct shape.queue_name from shape
   where shape.queue_name is not null
     and not exists (select 1 from @schema@._private_job_queues as q where q.queue_name = shape.queue_name)
   order by shape.queue_name
  on conflict (queue_name) do update set queue_name = excluded.queue_name
  returning id, queue_name
), queue as (
  select q.id, q.queue_name from @schema@._private_job_queues as q
   where q.queue_name in (select shape.queue_name from shape)
  union all
  select new_queue.id, new_queue.queue_name from new_queue
), shaped as (  -- each shape with its task's and queue's ids
  select shape.shape, task.id as task_id, queue.id as queue_id, shape.max_attempts, shape.priority, shape.flags
    from shape
    join task on task.identifier = shape.identifier
    left join queue on queue.queue_name = shape.queue_name
), j as (
  insert into @schema@._private_jobs (job_queue_id, task_id, payload, run_at, max_attempts, priority, flags)
  select shaped.queue_id, shaped.task_id, coalesce(spec.payload, '{}'::json), coalesce(spec.run_at, now()),
         coalesce(shaped.max_attempts, 25::smallint), coalesce(shaped.priority, 0::smallint), shaped.flags
    from spec
    join shaped on shaped.shape = spec.shape
   order by spec.position
  returning *
), notified as (
  select pg_notify('jobs:insert', json_build_object('r', random(), 'count', (select count(*) from spec))::text)
)

-- name: insert_jobs
-- What only the database knows of the jobs written, as one row of arrays in the batch's order (their ids, task
-- and queue ids and run_at) and the statement's now(), which is their created_at and updated_at: the rest of
-- each job is its spec (jobs.jobs_written). One row of four arrays decodes in a fraction of the time of a
-- thousand rows of sixteen columns, and no payload comes back over the wire.
@part:insert_jobs_call@
select array_agg(j.id order by j.id) as ids,
       array_agg(j.task_id order by j.id) as task_ids,
       array_agg(j.job_queue_id order by j.id) as queue_ids,
       array_agg(j.run_at order by j.id) as run_ats,
       now() as created_at
  from j cross join notified

-- name: insert_jobs_counted
@part:insert_jobs_call@
select count(*)::int from j cross join notified

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
