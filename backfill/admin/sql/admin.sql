-- The admin API's own reads and writes (backfill/admin): the overview's figures, a job's error history, cron
-- schedules, the audit trail. What the CLI already does (jobs, dead-letter entries, pauses, cancellations) the
-- API does through the same functions, not here.

-- name: ready_sample
-- $1 the cap. The ready jobs (unlocked, attempts left, due now) per lane, per named queue, per task and per
-- priority, with the age of the oldest, counted over at most $1 jobs of each priority: every live refresh of the
-- overview runs this, so it must cost the same over a million ready jobs as over a thousand. Each priority's jobs
-- are read in run_at order from the (priority, run_at) index (available_priorities finds the priorities), up to
-- the cap, so the oldest of each comes first. A priority that hit the cap says so (capped): the caller marks
-- every figure that may hold more jobs of it as "at least" (live.py). The lane needs the row's flags, so each
-- sampled job is one heap visit.
with sample as (
  select p.priority, r.lane, r.job_queue_id, r.task_id, r.run_at,
         count(*) over (partition by p.priority) >= $1::int as capped
    from unnest(@part:available_priorities@) as p(priority)
   cross join lateral (
     select @part:lane_of_job@ as lane, j.job_queue_id, j.task_id, j.run_at
       from @schema@._private_jobs as j
      where j.is_available = true
        and j.priority = p.priority
        and j.run_at <= now()
      order by j.run_at
      limit $1::int
   ) as r
)
select case when grouping(sample.lane) = 0 then 'lane'
            when grouping(q.queue_name) = 0 then 'queue'
            when grouping(t.identifier) = 0 then 'task'
            else 'priority' end as kind,
       coalesce(sample.lane, q.queue_name, t.identifier, sample.priority::text) as name,
       count(*)::bigint as ready,
       bool_or(sample.capped) as capped,
       extract(epoch from now() - min(sample.run_at))::float8 as oldest_ready_seconds
  from sample
  left join @schema@._private_job_queues as q on q.id = sample.job_queue_id
  join @schema@._private_tasks as t on t.id = sample.task_id
 group by grouping sets ((sample.lane), (q.queue_name), (t.identifier), (sample.priority))
having grouping(q.queue_name) = 1 or q.queue_name is not null
 order by kind, name

-- name: scheduled_sample
-- $1 the cap. The waiting jobs due later per lane and per priority, counted as ready_sample counts the ready ones:
-- at most $1 per priority, read from the index in run_at order from now on.
with sample as (
  select p.priority, r.lane, count(*) over (partition by p.priority) >= $1::int as capped
    from unnest(@part:available_priorities@) as p(priority)
   cross join lateral (
     select @part:lane_of_job@ as lane
       from @schema@._private_jobs as j
      where j.is_available = true
        and j.priority = p.priority
        and j.run_at > now()
      order by j.run_at
      limit $1::int
   ) as r
)
select case when grouping(sample.lane) = 0 then 'lane' else 'priority' end as kind,
       coalesce(sample.lane, sample.priority::text) as name,
       count(*)::bigint as scheduled,
       bool_or(capped) as capped
  from sample
 group by grouping sets ((sample.lane), (sample.priority))
 order by kind, name

-- name: throughput_minutes
-- Attempts ended per lane and minute over the last hour (the current minute included), from every runner: the
-- overview's charts and its 1/5/15/60-minute figures. At most 60 rows per lane, read from the primary key.
select lane, minute, succeeded, failed
  from @schema@.backfill_throughput
 where minute >= date_trunc('minute', now()) - interval '59 minutes'
 order by lane, minute

-- name: worker_registry
-- The registered backfill workers (a row per worker and lane; a dead one is kept an hour), newest first, with
-- whether each is alive by its own dead_after, and how many jobs sweepers rescued from it (backfill_job_recoveries
-- holds only rescued jobs, and drops them once they finish). The jobs each holds come from the spaced lock count
-- (live.py): counting locks reads the whole jobs table.
select w.worker_id, w.lane, w.hostname, w.pid, w.concurrency, w.started_at, w.last_heartbeat_at, w.declared_dead_at,
       w.last_heartbeat_at + w.dead_after >= now() as alive,
       extract(epoch from now() - w.last_heartbeat_at)::float8 as heartbeat_age_seconds,
       coalesce(r.rescued, 0)::int as rescued_jobs
  from @schema@.backfill_workers as w
  left join (
    select last_worker_id, count(*) as rescued from @schema@.backfill_job_recoveries group by last_worker_id
  ) as r on r.last_worker_id = w.worker_id
 order by w.started_at desc, w.worker_id

-- name: dead_letters
-- $1 the cap. Dead-letter entries still dead (not requeued or deleted), counted up to the cap on their index.
select count(*)::bigint as dead, count(*) >= $1::int as capped
  from (select 1 from @schema@.backfill_dlq where state = 'dead' limit $1::int) as dead

-- name: database_now
select now()

-- name: without_jit
-- In the snapshot's transaction. Its statements are bounded, so compiling them is pure cost: the planner's
-- estimate for the samples over a million jobs is above jit_above_cost, and JIT took 30 ms of each.
set local jit = off

-- name: lanes_seen
-- The lanes of the registered workers (a small table): with the built-in ones, the lanes a job list can filter by.
select distinct lane from @schema@.backfill_workers where lane is not null order by lane

-- name: job_errors
-- $1 job id: its error history (backfill_job_errors), oldest first.
select attempt, error, permanent, failed_at, exception_type, traceback
  from @schema@.backfill_job_errors
 where job_id = $1::bigint
 order by failed_at, id

-- name: known_crontabs
-- Cron identifiers Graphile's scheduler knows, with when each last ran (_private_known_crontabs).
select identifier, known_since, last_execution from @schema@._private_known_crontabs order by identifier

-- name: record_audit
-- $1 actor, $2 action, $3 target (JSON), $4 how many rows, $5 dry run.
insert into @schema@.backfill_audit (actor, action, target, count, dry_run)
values ($1::text, $2::text, $3::jsonb, $4::int, $5::boolean)
returning id

-- name: audit_page
-- $1 before this id (null: the newest), $2 at most this many; newest first.
select id, at, actor, action, target::text as target, count, dry_run
  from @schema@.backfill_audit
 where ($1::bigint is null or id < $1::bigint)
 order by id desc
 limit $2::int
