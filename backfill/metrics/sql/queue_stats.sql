-- Queue depth gauges (backfill/metrics/queue_stats.py): one grouped statement over the waiting jobs, then the
-- dead-letter entries by task if that table exists.

-- name: waiting
-- grouping sets give the per-lane and per-queue rows in one pass over the waiting jobs (is_available: unlocked,
-- attempts left). The `(select 1)` left join returns one row even when nothing waits, to carry dlq_exists: the
-- dead-letter table is another component's and may not exist yet (or any more), so it is checked every round.
with waiting as (
  select @part:lane_of_job@ as lane,
         j.job_queue_id,
         j.run_at,
         j.run_at <= now() as due
    from @schema@._private_jobs as j
   where j.is_available
),
stats as (
  select grouping(waiting.lane) = 0 as by_lane,
         waiting.lane,
         queues.queue_name,
         count(*) filter (where waiting.due) as ready,
         count(*) filter (where not waiting.due) as scheduled,
         coalesce(extract(epoch from now() - min(waiting.run_at) filter (where waiting.due)), 0)::float8
           as oldest_ready_age
    from waiting
    left join @schema@._private_job_queues as queues on queues.id = waiting.job_queue_id
   group by grouping sets ((waiting.lane), (queues.queue_name))
  having grouping(waiting.lane) = 0 or queues.queue_name is not null
)
select to_regclass(quote_ident(@schema_name@) || '.backfill_dlq') is not null as dlq_exists, stats.*
  from (select 1) as one
  left join stats on true

-- name: dead_by_task
select task_identifier, count(*) as dead from @schema@.backfill_dlq where state = 'dead' group by 1
