-- backfill's own migration line "core", id 2: the error of every failed attempt, with its time.
-- Graphile's jobs table keeps only the last error; triage (the dead-letter queue) wants the whole story. Rows
-- are written in the same statement that records the failure, so history and job never disagree. No foreign
-- key, as for backfill_job_recoveries: Graphile deletes finished jobs directly, and the sweeper collects the
-- rows of jobs that no longer exist (the dead-letter move takes its job's rows with it).
create table @schema@.backfill_job_errors (
  id bigserial primary key,
  job_id bigint not null,
  attempt int not null,
  error text,
  -- The attempt failed permanently (the handler said so, or the job was a poison pill), not by running out.
  permanent boolean not null default false,
  failed_at timestamptz not null default now()
);

create index backfill_job_errors_job_id on @schema@.backfill_job_errors (job_id);
