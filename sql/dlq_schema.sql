-- backfill's dead-letter table, for teams that apply schema changes themselves:
--
--   psql "$DATABASE_URL" -v schema=my_schema -f sql/dlq_schema.sql
--
-- The schema defaults to graphile_worker and must already hold Graphile Worker's tables (install them with
-- `backfill migrate` or Node's graphile-worker first). This creates the same table, constraints and indexes
-- as backfill's migration line "dlq" (ids 1 to 3), and records those migrations in backfill_migrations, so a
-- backfill process started later finds them applied and does nothing. Safe to run again, and on a table an
-- earlier version of this script made (it adds what is missing): every step checks first.
-- One transaction: it all happens or none of it does.

\set ON_ERROR_STOP on
\if :{?schema}
\else
  \set schema graphile_worker
\endif

begin;

-- The lock backfill's own migrator takes for this schema (class 'bkfl', key hashtext(schema)), so this
-- script and a backfill process starting at the same moment apply the table once, one after the other.
select pg_advisory_xact_lock(1651205740, hashtext(:'schema'));

-- The tracking table of backfill's own migration lines, as backfill creates it.
create table if not exists :"schema".backfill_migrations (
  line text,
  id int,
  name text not null,
  applied_at timestamptz not null default now(),
  primary key (line, id)
);

-- One row per dead job: see backfill/dlq/sql/dlq_001_table.sql for what each column holds.
create table if not exists :"schema".backfill_dlq (
  id bigserial primary key,
  job_id bigint not null,
  task_identifier text not null,
  payload json not null default '{}'::json,
  queue_name text,
  priority int not null default 0,
  job_key text,
  flags jsonb,
  attempts int not null,
  max_attempts int not null,
  errors jsonb not null default '[]'::jsonb,
  last_error text,
  reason text not null,
  created_at timestamptz not null,
  run_at timestamptz not null,
  failed_at timestamptz not null,
  requeue_count int not null default 0,
  requeued_at timestamptz,
  requeued_job_id bigint,
  state text not null default 'dead',
  notes text,
  updated_at timestamptz not null default now(),
  constraint backfill_dlq_state_check check (state in ('dead', 'requeued')),
  constraint backfill_dlq_reason_check check (reason in ('attempts_exhausted', 'permanent_failure')),
  constraint backfill_dlq_requeued_job_check check ((state = 'requeued') = (requeued_job_id is not null)),
  constraint backfill_dlq_errors_check check (jsonb_typeof(errors) = 'array'),
  constraint backfill_dlq_requeue_count_check check (requeue_count >= 0)
);

create index if not exists backfill_dlq_failed_at_id on :"schema".backfill_dlq (failed_at, id);
create index if not exists backfill_dlq_task_failed_at_id on :"schema".backfill_dlq (task_identifier, failed_at, id);
create index if not exists backfill_dlq_state_failed_at_id on :"schema".backfill_dlq (state, failed_at, id);
create index if not exists backfill_dlq_requeued_job_id on :"schema".backfill_dlq (requeued_job_id)
  where requeued_job_id is not null;

-- Migration dlq/2 (backfill/dlq/sql/dlq_002_error_details.sql): the last attempt's exception type and
-- traceback. Added after the table, as the migration does, so the columns come in the same order.
alter table :"schema".backfill_dlq
  add column if not exists exception_type text,
  add column if not exists traceback text;

-- Migration dlq/3 (backfill/dlq/sql/dlq_003_dead_jobs_index.sql): the dead jobs of Graphile's jobs table, for the
-- mover's periodic pass, which otherwise reads every job. Building it locks writes to the jobs table for one scan
-- of it (about a second per million rows).
create index if not exists backfill_dead_jobs on :"schema"._private_jobs (id)
  where attempts >= max_attempts and locked_at is null;

-- The names match backfill.dlq.migrations.DLQ_MIGRATIONS.
insert into :"schema".backfill_migrations (line, id, name)
values ('dlq', 1, 'dead-letter table'), ('dlq', 2, 'error details'), ('dlq', 3, 'dead jobs index')
on conflict (line, id) do nothing;

commit;
