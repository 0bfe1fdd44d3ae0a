-- backfill's own migration line "tasks", id 1: the defaults each task declares with @backfill.task.
-- Worker runners publish the defaults of the tasks they run at start-up; a client enqueueing a task its own
-- process never imported reads them here, so a task's lane, priority, serial queue and retry policy apply
-- wherever the job is enqueued from. One row per task identifier; null means "no default".
create table @schema@.backfill_task_defaults (
  identifier text primary key,
  priority smallint,
  queue_name text,
  lane text,
  -- The backfill:retry=... flag of the task's policy, and that policy's attempts.
  retry_flag text,
  max_attempts smallint,
  published_by text not null,
  published_at timestamptz not null default now()
);
