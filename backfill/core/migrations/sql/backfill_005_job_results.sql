-- backfill's own migration line "core", id 5: the outcomes of jobs that asked to keep them (a task's keep_result,
-- or a job's flag backfill:result=<seconds>). Graphile deletes a job's row when it succeeds, so its return
-- value and timings need a home of their own; a job that failed for good or was cancelled is recorded too, so
-- that a caller waiting on it learns how it ended. The worker writes a row in the statement that completes or
-- fails the job, so the job and its outcome are never both present nor both missing. Nothing is written for
-- jobs that did not ask. Rows expire: expires_at = the end plus the retention, and the worker's upkeep prunes
-- them. No foreign key, as for backfill_job_errors: the job row is gone by the time most of these exist.
create table @schema@.backfill_job_results (
  job_id bigint primary key,
  task_identifier text not null,
  queue_name text,
  job_key text,
  state text not null,
  -- The handler's return value (json, as Graphile's payloads: kept as written); null unless succeeded.
  result json,
  -- How it failed (its last_error), why it was cancelled, or why the return value could not be kept.
  error text,
  attempts int not null,
  max_attempts int not null,
  created_at timestamptz not null,
  -- The claim of the attempt that ended it (null: it never ran, e.g. cancelled while queued).
  started_at timestamptz,
  finished_at timestamptz not null default now(),
  -- Seconds the last attempt ran, as the worker measured it.
  duration float8,
  expires_at timestamptz not null,
  constraint backfill_job_results_state_check check (state in ('succeeded', 'failed', 'cancelled'))
);

-- Pruning takes the expired rows in expiry order, a batch at a time.
create index backfill_job_results_expires_at on @schema@.backfill_job_results (expires_at);
