-- The admin API's own reads and writes (backfill/admin): the overview's figures, a job's error history, cron
-- schedules, the audit trail. What the CLI already does (jobs, dead-letter entries, pauses, cancellations) the
-- API does through the same functions, not here.

-- name: ready_by
-- Ready jobs (unlocked, attempts left, due now) per lane, per named queue and per task, with the age of the
-- oldest. Read priority by priority up to the first job due later (available_priorities), as the queue gauges do.
with ready as (
  select @part:lane_of_job@ as lane, j.job_queue_id, j.task_id, j.run_at
    from @schema@._private_jobs as j
   where j.is_available = true
     and j.priority = any(@part:available_priorities@)
     and j.run_at <= now()
)
select case when grouping(ready.lane) = 0 then 'lane'
            when grouping(q.queue_name) = 0 then 'queue'
            else 'task' end as kind,
       coalesce(ready.lane, q.queue_name, t.identifier) as name,
       count(*)::bigint as ready,
       extract(epoch from now() - min(ready.run_at))::float8 as oldest_ready_seconds
  from ready
  left join @schema@._private_job_queues as q on q.id = ready.job_queue_id
  join @schema@._private_tasks as t on t.id = ready.task_id
 group by grouping sets ((ready.lane), (q.queue_name), (t.identifier))
having grouping(ready.lane) = 0 or grouping(t.identifier) = 0 or q.queue_name is not null
 order by kind, name

-- name: throughput
-- Attempts ended per lane over the last 1, 5, 15 and 60 minutes (the current minute included), from every runner.
select lane,
       coalesce(sum(succeeded) filter (where minute >= date_trunc('minute', now()) - interval '0 minutes'), 0)::bigint
         as succeeded_1m,
       coalesce(sum(failed) filter (where minute >= date_trunc('minute', now()) - interval '0 minutes'), 0)::bigint
         as failed_1m,
       coalesce(sum(succeeded) filter (where minute >= date_trunc('minute', now()) - interval '4 minutes'), 0)::bigint
         as succeeded_5m,
       coalesce(sum(failed) filter (where minute >= date_trunc('minute', now()) - interval '4 minutes'), 0)::bigint
         as failed_5m,
       coalesce(sum(succeeded) filter (where minute >= date_trunc('minute', now()) - interval '14 minutes'), 0)::bigint
         as succeeded_15m,
       coalesce(sum(failed) filter (where minute >= date_trunc('minute', now()) - interval '14 minutes'), 0)::bigint
         as failed_15m,
       coalesce(sum(succeeded), 0)::bigint as succeeded_60m,
       coalesce(sum(failed), 0)::bigint as failed_60m
  from @schema@.backfill_throughput
 where minute >= date_trunc('minute', now()) - interval '59 minutes'
 group by lane
 order by lane

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
