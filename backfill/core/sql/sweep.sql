-- The sweeper (SweepSql in backfill/core/upkeep/sweeper.py): one transaction that rescues what dead backfill
-- workers held. sweeper.py's docstring explains the order of the steps and why each race is safe.

-- name: try_lock
-- $1 backfill's advisory lock class, $2 the schema name: one sweep at a time per schema; the loser skips.
select pg_try_advisory_xact_lock($1::int, hashtext($2::text || ':sweep'))

-- name: declare_dead
-- Every stale row, newly or already declared dead: a worker declared dead may have claimed more before it died
-- for good. now() is the transaction's start, so "= now()" marks the rows declared here.
update @schema@.backfill_workers set declared_dead_at = coalesce(declared_dead_at, now())
 where last_heartbeat_at + dead_after < now()
returning worker_id, declared_dead_at = now() as newly

-- name: forget_dead_workers
-- Rows of workers declared dead are kept a while: every sweep meanwhile releases whatever they still hold.
delete from @schema@.backfill_workers where declared_dead_at < now() - interval @forget_dead_workers_after@

-- name: lock_jobs
-- $1 dead worker ids. Locked in id order, a fixed order (see the races). _private_jobs has no index on
-- locked_by, so this scans the table; it runs only when some worker died.
select id, locked_by from @schema@._private_jobs where locked_by = any($1::text[]) order by id for update

-- name: count_recoveries
-- $1 job ids, $2 the dead worker that held each.
insert into @schema@.backfill_job_recoveries as r (job_id, recoveries, last_recovered_at, last_worker_id)
select rescued.id, 1, now(), rescued.worker_id
  from unnest($1::bigint[], $2::text[]) as rescued(id, worker_id)
on conflict (job_id) do update
   set recoveries = r.recoveries + 1,
       last_recovered_at = excluded.last_recovered_at,
       last_worker_id = excluded.last_worker_id
returning r.job_id, r.recoveries, r.last_worker_id

-- name: release_jobs
-- $1 job ids, $2 whether each is now a suspect (run alone from now on).
-- run_at stays as it is: it is already in the past, so the job is runnable at once. locked_at goes to null,
-- which is what fences the dead claim's late writes.
update @schema@._private_jobs as jobs
   set attempts = greatest(jobs.attempts - 1, 0),
       locked_by = null,
       locked_at = null,
       flags = case
         when rescued.suspect
           then coalesce(jobs.flags, '{}'::jsonb) || jsonb_build_object(@suspect_flag@, true)
         else jobs.flags
       end,
       updated_at = now()
  from unnest($1::bigint[], $2::boolean[]) as rescued(id, suspect)
 where jobs.id = rescued.id

-- name: poison_jobs
-- $1 job ids, $2 the last_error of each (sweeper.poison_message).
with before as (
  -- The attempt the dead worker was running, before the update below uses up the rest.
  select jobs.id, jobs.attempts from @schema@._private_jobs as jobs where jobs.id = any($1::bigint[])
), poisoned_jobs as (
  update @schema@._private_jobs as jobs
     set attempts = jobs.max_attempts,
         last_error = poisoned.message,
         locked_by = null,
         locked_at = null,
         updated_at = now()
    from unnest($1::bigint[], $2::text[]) as poisoned(id, message)
   where jobs.id = poisoned.id
  returning jobs.id, jobs.last_error
)
insert into @schema@.backfill_job_errors (job_id, attempt, error, permanent)
select poisoned_jobs.id, before.attempts, poisoned_jobs.last_error, true
  from poisoned_jobs join before on before.id = poisoned_jobs.id

-- name: unlock_queues
-- $1 dead worker ids.
update @schema@._private_job_queues set locked_by = null, locked_at = null
 where locked_by = any($1::text[])
returning queue_name

-- name: forget_recoveries
-- Recovery counts of jobs that no longer exist, at most a batch per sweep: that bounds the sweep's work after a
-- mass deletion of jobs; the rest go at the next sweeps.
delete from @schema@.backfill_job_recoveries
 where job_id in (
   select r.job_id from @schema@.backfill_job_recoveries as r
    where not exists (select 1 from @schema@._private_jobs as jobs where jobs.id = r.job_id)
    limit @gc_batch@
 )

-- name: forget_errors
-- Error history of jobs that finished (deleted by whoever completed them, Node included), a batch per sweep.
delete from @schema@.backfill_job_errors
 where id in (
   select e.id from @schema@.backfill_job_errors as e
    where not exists (select 1 from @schema@._private_jobs as jobs where jobs.id = e.job_id)
    limit @gc_batch@
 )
