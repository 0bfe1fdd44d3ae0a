-- backfill's own migration line "core", id 1: live backfill workers and how often each job was rescued.
-- These tables sit beside Graphile's in the same schema (prefixed backfill_) and never change Graphile's own
-- tables, so a Node worker sharing the schema sees exactly the schema it expects.

-- One row per running backfill worker, kept fresh by its heartbeat. Each worker states its own dead_after,
-- so workers started with different settings are each judged by their own threshold.
create table @schema@.backfill_workers (
  worker_id text primary key,
  hostname text not null,
  pid int not null,
  started_at timestamptz not null default now(),
  last_heartbeat_at timestamptz not null default now(),
  dead_after interval not null,
  concurrency int,
  tasks text[] not null default '{}',
  version text,
  -- Set by the sweeper that found the heartbeat stale. The row is kept (for an hour) rather than deleted, so
  -- that locks the worker takes after being declared dead (it does not know until its next beat) are still
  -- released by later sweeps if it then really dies; a worker that was only slow finds its beat refused,
  -- and registers again, which clears it.
  declared_dead_at timestamptz
);

-- How often each job was rescued from a dead worker, so a job that kills every worker running it can be
-- failed as a poison pill. A side table because _private_jobs must stay identical to Node's schema. No
-- foreign key: Graphile deletes finished jobs directly, and the sweeper collects the orphaned rows.
create table @schema@.backfill_job_recoveries (
  job_id bigint primary key,
  recoveries int not null,
  last_recovered_at timestamptz not null,
  last_worker_id text not null
);
