-- The read side of the job utilities (InspectSql in backfill/core/admin/queries.py): jobs by filter, one job,
-- queue, task and worker figures.
--
-- Tables that backfill's own migrations add may be missing (a schema migrated by Node only) or older (migrated by
-- an earlier backfill): each statement that reads one comes in variants, chosen by queries.py from the catalog.

-- name: get_job
select @part:job_info_columns@, @part:last_exception_type@ as exception_type
  from @schema@._private_jobs as j
  @part:job_name_joins@
 where j.id = $1::bigint

-- name: get_job_without_history
select @part:job_info_columns@, null::text as exception_type
  from @schema@._private_jobs as j
  @part:job_name_joins@
 where j.id = $1::bigint

-- name: list_jobs
select * from (
  select @part:job_info_columns@, @part:last_exception_type@ as exception_type @part:listed_jobs@
) as listed
@part:listing_page@

-- name: list_jobs_without_history
select * from (
  select @part:job_info_columns@, null::text as exception_type @part:listed_jobs@
) as listed
@part:listing_page@

-- part: job_info_columns
-- Every column JobInfo reads but the exception type.
@part:named_job_columns@, j.is_available, @part:job_state@ as state

-- part: last_exception_type
-- The exception type of a job's last failure, from backfill's error history, only when that history row is the
-- row's last error: a Node worker's later failure is not in the history, and the type of an earlier attempt must
-- not be shown beside it. The "without_history" variants have null instead: in a schema whose history has no
-- exception_type column yet (backfill's own migrations not applied, or applied by an older backfill).
(
  select e.exception_type from @schema@.backfill_job_errors as e
   where e.job_id = j.id and e.error is not distinct from j.last_error
   order by e.id desc limit 1
)

-- part: listed_jobs
-- $1 task, $2 queue, $3 state, $4 locked_by, $5 key, $6 after this id, $9/$10 priority bounds, $11 required flags
-- (any of), $12 forbidden flags (none of), $13 text in last_error, $14/$15 created_at bounds; each filter is
-- skipped when its parameter is null.
  from @schema@._private_jobs as j
  @part:job_name_joins@
 where @part:task_queue_state_filter@
   and ($4::text is null or j.locked_by = $4::text)
   and ($5::text is null or j.key = $5::text)
   and ($6::bigint is null or j.id > $6::bigint)
   -- A worker's fetch filter (WorkerOptions): the slice of the table a lane's worker fetches.
   and ($9::int is null or j.priority >= $9::int)
   and ($10::int is null or j.priority <= $10::int)
   and ($11::text[] is null or j.flags ?| $11::text[])
   and ($12::text[] is null or (j.flags ?| $12::text[]) is not true)
   -- strpos, not like/ilike: the text is searched for as given, so an error mentioning "100%" or "a_b" is found
   -- without escaping. lower() on both sides for any case; a job that never failed (null) is left out.
   and ($13::text is null or strpos(lower(j.last_error), lower($13::text)) > 0)
   -- A half-open range [$14, $15): consecutive windows neither share nor lose a job.
   and ($14::timestamptz is null or j.created_at >= $14::timestamptz)
   and ($15::timestamptz is null or j.created_at < $15::timestamptz)

-- part: listing_page
-- $8 exception type (null: any), $7 limit. Ordered by id, and resumed with id > after_id ($6), so pages neither
-- repeat nor skip a job however the others change between pages.
 where $8::text is null or listed.exception_type = $8::text
 order by listed.id
 limit $7::int

-- name: queue_stats
-- count(j.id) and min() skip the all-null row that the left join makes for a queue without jobs.
with jobs as (
  select j.job_queue_id, j.id, j.run_at, @part:job_state@ as state
    from @schema@._private_jobs as j
   where j.job_queue_id is not null
)
select q.queue_name, q.locked_by, q.locked_at,
       count(jobs.id)::int as total,
       count(jobs.id) filter (where jobs.state = 'waiting')::int as waiting,
       count(jobs.id) filter (where jobs.state = 'running')::int as running,
       now() - min(jobs.run_at) filter (where jobs.state = 'waiting') as oldest_waiting_age
  from @schema@._private_job_queues as q
  left join jobs on jobs.job_queue_id = q.id
 group by q.id
 order by q.queue_name

-- name: task_stats
with jobs as (
  select j.task_id, @part:job_state@ as state from @schema@._private_jobs as j
)
select t.identifier as task_identifier,
       count(*) filter (where jobs.state = 'waiting')::int as waiting,
       count(*) filter (where jobs.state = 'scheduled')::int as scheduled,
       count(*) filter (where jobs.state = 'running')::int as running,
       count(*) filter (where jobs.state = 'retrying')::int as retrying,
       count(*) filter (where jobs.state = 'failed')::int as failed
  from @schema@._private_tasks as t
  left join jobs on jobs.task_id = t.id
 group by t.id
 order by t.identifier

-- The workers come in three variants, which differ only in the relation "registry" (a CTE, which PostgreSQL
-- inlines) that the listing reads the registered workers from.

-- name: workers
with registry as (
  select worker_id, hostname, pid, started_at, last_heartbeat_at, dead_after, concurrency, tasks, version, lane
    from @schema@.backfill_workers
)@part:worker_listing@

-- name: workers_without_lanes
-- The lane column arrived with core migration 4; a registry made by an older backfill has none.
with registry as (
  select worker_id, hostname, pid, started_at, last_heartbeat_at, dead_after, concurrency, tasks, version,
         null::text as lane
    from @schema@.backfill_workers
)@part:worker_listing@

-- name: workers_without_registry
-- Stands in for backfill_workers in a database where no backfill worker ever registered (the table is created by
-- backfill's own migrations): the same columns, no rows.
with registry as (
  select null::text as worker_id, null::text as hostname, null::int as pid, null::timestamptz as started_at,
         null::timestamptz as last_heartbeat_at, null::interval as dead_after, null::int as concurrency,
         null::text[] as tasks, null::text as version, null::text as lane
   where false
)@part:worker_listing@

-- part: worker_listing
-- Registered workers ("registry") and the owners of locks, in a full join: registered workers holding nothing,
-- and lock owners that never registered (Node workers).
, held as (
  select locked_by as worker_id, count(*) as jobs, 0 as queues
    from @schema@._private_jobs where locked_by is not null group by locked_by
  union all
  select locked_by, 0, count(*)
    from @schema@._private_job_queues where locked_by is not null group by locked_by
), owners as (
  select worker_id, sum(jobs)::int as locked_jobs, sum(queues)::int as locked_queues
    from held group by worker_id
)
select coalesce(w.worker_id, o.worker_id) as worker_id,
       w.worker_id is not null as registered,
       case when w.worker_id is not null then w.last_heartbeat_at + w.dead_after >= now() end as alive,
       coalesce(o.locked_jobs, 0) as locked_jobs,
       coalesce(o.locked_queues, 0) as locked_queues,
       w.hostname, w.pid, w.started_at, w.last_heartbeat_at, w.dead_after, w.concurrency, w.tasks,
       w.version, w.lane
  from registry as w
  full join owners as o on o.worker_id = w.worker_id
 order by registered desc, worker_id
