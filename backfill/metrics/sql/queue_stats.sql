-- Queue depth gauges (backfill/metrics/queue_stats.py): the ready jobs every round, the scheduled ones when their
-- count is due (scheduled_count.py says when), then the dead-letter entries by task if that table exists.
-- The ready and the scheduled jobs are counted apart because they cost differently: the ready ones are read up to
-- the first job due later, priority by priority (jobs.sql's available_priorities), so a round over an idle queue
-- with a million jobs scheduled for tomorrow reads a few pages; the scheduled ones can only be counted by reading
-- them all (1-2 s for a million), which is why that count is not run every round.

-- name: ready
-- $1 the database time of the scheduled count the round reuses (null: none). due_since_count counts the jobs due
-- now that were still due later at that count, which the caller takes off the scheduled figure it kept.
-- grouping sets give the per-lane and per-queue rows in one pass (is_available: unlocked, attempts left). The
-- `(select 1)` left join returns one row even when nothing is ready, to carry dlq_exists: the dead-letter table is
-- another component's and may not exist yet (or any more), so it is checked every round.
with ready as (
  select @part:lane_of_job@ as lane,
         j.job_queue_id,
         j.run_at
    from @schema@._private_jobs as j
   where j.is_available = true
     and j.priority = any(@part:available_priorities@)
     and j.run_at <= now()
),
stats as (
  select grouping(ready.lane) = 0 as by_lane,
         ready.lane,
         queues.queue_name,
         count(*) as ready,
         count(*) filter (where ready.run_at > $1::timestamptz) as due_since_count,
         coalesce(extract(epoch from now() - min(ready.run_at)), 0)::float8 as oldest_ready_age
    from ready
    left join @schema@._private_job_queues as queues on queues.id = ready.job_queue_id
   group by grouping sets ((ready.lane), (queues.queue_name))
  having grouping(ready.lane) = 0 or queues.queue_name is not null
)
select to_regclass(quote_ident(@schema_name@) || '.backfill_dlq') is not null as dlq_exists, stats.*
  from (select 1) as one
  left join stats on true

-- name: scheduled
-- The waiting jobs due later, per lane and per named queue, and the database time they were counted at (now() is
-- the transaction's start: "due later" and counted_at are the same instant). Every such row is read.
with scheduled as (
  select @part:lane_of_job@ as lane, j.job_queue_id
    from @schema@._private_jobs as j
   where j.is_available = true
     and j.run_at > now()
),
stats as (
  select grouping(scheduled.lane) = 0 as by_lane,
         scheduled.lane,
         queues.queue_name,
         count(*) as scheduled
    from scheduled
    left join @schema@._private_job_queues as queues on queues.id = scheduled.job_queue_id
   group by grouping sets ((scheduled.lane), (queues.queue_name))
  having grouping(scheduled.lane) = 0 or queues.queue_name is not null
)
select now() as counted_at, stats.*
  from (select 1) as one
  left join stats on true

-- name: without_jit
-- Before the scheduled count, in its transaction: JIT compiling its plan (41 functions, inlined and optimised)
-- doubled the count of 1M scheduled jobs on PostgreSQL 15, 3.2 s instead of 1.6 s (EXPLAIN ANALYZE, loaded machine).
set local jit = off

-- name: dead_by_task
select task_identifier, count(*) as dead from @schema@.backfill_dlq where state = 'dead' group by 1
