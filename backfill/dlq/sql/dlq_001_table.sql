-- backfill's own migration line "dlq", id 1: the dead-letter table, one row per dead job.
-- It sits beside Graphile's tables in the same schema and never changes them. sql/dlq_schema.sql creates the
-- same table for teams that apply migrations with psql; a test keeps the two catalogs identical.
create table @schema@.backfill_dlq (
  id bigserial primary key,
  -- The jobs-table id of the job whose death made this entry (a later requeue keeps it; each error says
  -- which job it came from). No foreign key: the job row is deleted by the move that writes this one.
  job_id bigint not null,
  task_identifier text not null,
  -- json, as in _private_jobs: the payload is kept and requeued byte for byte, and a payload jsonb would
  -- refuse (a \u0000 escape) cannot stop the move.
  payload json not null default '{}'::json,
  queue_name text,
  priority int not null default 0,
  job_key text,
  -- The job's flags ({"flag": true, ...}) without the backfill:dlq=<id> that marks a requeued job.
  flags jsonb,
  attempts int not null,
  max_attempts int not null,
  -- Every failed attempt, oldest first: [{"attempt", "error", "failed_at", "permanent", "job_id"}, ...].
  errors jsonb not null default '[]'::jsonb,
  last_error text,
  reason text not null,
  -- The first dead job's created_at and run_at.
  created_at timestamptz not null,
  run_at timestamptz not null,
  -- When the last attempt failed (for an attempt made by a Node worker: the row's updated_at, a lower bound).
  failed_at timestamptz not null,
  requeue_count int not null default 0,
  requeued_at timestamptz,
  -- The live job of a requeue in progress; null once it died again (the entry is then 'dead' once more).
  requeued_job_id bigint,
  state text not null default 'dead',
  notes text,
  updated_at timestamptz not null default now(),
  constraint backfill_dlq_state_check check (state in ('dead', 'requeued')),
  constraint backfill_dlq_reason_check check (reason in ('attempts_exhausted', 'permanent_failure')),
  -- A requeued entry always names its live job, and a dead one never does: the sweep of finished requeues
  -- and the move back both rely on it.
  constraint backfill_dlq_requeued_job_check check ((state = 'requeued') = (requeued_job_id is not null)),
  constraint backfill_dlq_errors_check check (jsonb_typeof(errors) = 'array'),
  constraint backfill_dlq_requeue_count_check check (requeue_count >= 0)
);

-- Listing is newest failure first, resumed after a (failed_at, id) cursor; time ranges use the same index.
create index backfill_dlq_failed_at_id on @schema@.backfill_dlq (failed_at, id);
-- The task and state filters, each still in listing order so a filtered page reads one index range.
create index backfill_dlq_task_failed_at_id on @schema@.backfill_dlq (task_identifier, failed_at, id);
create index backfill_dlq_state_failed_at_id on @schema@.backfill_dlq (state, failed_at, id);
-- Finished requeues are found by their live job (partial: most entries are dead and have none).
create index backfill_dlq_requeued_job_id on @schema@.backfill_dlq (requeued_job_id)
  where requeued_job_id is not null;
