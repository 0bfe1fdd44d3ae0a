-- What backfill.testing reads and changes in a test's database (WaitingJobsSql in backfill/testing/queries.py).
-- A job counts as waiting when no worker holds it and it has an attempt left: a job failed for good stays in the
-- jobs table only while the dead-letter queue is off, and it never runs again.

-- name: advance_jobs
-- $1 seconds. The clock (backfill/testing/clock.py): every waiting job becomes due that much sooner, as if that
-- much time had passed. The database's now(), which workers compare run_at with, cannot be moved; run_at can.
-- Jobs held by a worker are left alone: their run_at is rewritten when their attempt ends.
with moved as (
  update @schema@._private_jobs
     set run_at = run_at - $1::float8 * interval '1 second'
   where locked_at is null
     and attempts < max_attempts
  returning 1
)
select count(*)::int as moved from moved

-- name: next_run_at
-- How many seconds until the first waiting job that is not due yet becomes due; null when there is none.
select extract(epoch from min(run_at) - now())::float8 as seconds
  from @schema@._private_jobs
 where locked_at is null
   and attempts < max_attempts
   and run_at > now()

-- name: jobs_left
-- What a run left behind (backfill/testing/runs.py): waiting jobs due now, which none of the runner's lanes
-- took (a lane it does not run, a pause), and those due later (a retry's backoff, a delayed job).
select count(*) filter (where run_at <= now())::int as due,
       count(*) filter (where run_at > now())::int as scheduled
  from @schema@._private_jobs
 where locked_at is null
   and attempts < max_attempts
