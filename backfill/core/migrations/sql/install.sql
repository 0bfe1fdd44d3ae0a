-- Graphile Worker schema at revision 20, installed in one step on an empty schema.
--
-- `@schema@` is replaced by the quoted schema name before this runs (see backfill.core.migrations.graphile).
-- The names of constraints, sequences and indexes below are part of the contract: Node's migrations
-- renamed several tables over time (jobs -> _private_jobs, job_queues -> _private_job_queues), which left
-- suffixed names such as jobs_pkey1 and jobs_id_seq1. We create those names directly so that a schema
-- installed here has the same catalog as one grown by graphile-worker@0.18.0, revision by revision.

create table @schema@._private_job_queues (
  id int generated always as identity (sequence name @schema@.job_queues_id_seq),
  queue_name text not null,
  locked_at timestamptz,
  locked_by text,
  is_available boolean generated always as (locked_at is null) stored not null,
  constraint job_queues_pkey1 primary key (id),
  constraint job_queues_queue_name_key unique (queue_name),
  constraint job_queues_queue_name_check check (length(queue_name) <= 128)
);

create table @schema@._private_tasks (
  id int generated always as identity (sequence name @schema@.tasks_id_seq),
  identifier text not null,
  constraint tasks_pkey primary key (id),
  constraint tasks_identifier_key unique (identifier),
  constraint tasks_identifier_check check (length(identifier) <= 128)
);

create table @schema@._private_jobs (
  id bigint generated always as identity (sequence name @schema@.jobs_id_seq1),
  job_queue_id int,
  task_id int not null,
  -- json rather than jsonb: the payload is handed back byte for byte as it was enqueued.
  payload json not null default '{}'::json,
  priority smallint not null default 0,
  run_at timestamptz not null default now(),
  attempts smallint not null default 0,
  max_attempts smallint not null default 25,
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  key text,
  locked_at timestamptz,
  locked_by text,
  revision int not null default 0,
  flags jsonb,
  is_available boolean generated always as (locked_at is null and attempts < max_attempts) stored not null,
  constraint jobs_pkey1 primary key (id),
  constraint jobs_key_key1 unique (key),
  constraint jobs_key_check check (length(key) > 0 and length(key) <= 512),
  constraint jobs_max_attempts_check check (max_attempts >= 1)
);

-- Workers fetch by (priority, run_at) among available rows only; the covering columns let the fetch
-- decide eligibility (task, queue) from the index alone. The second index serves the common case of
-- jobs outside any named queue.
create index jobs_main_index on @schema@._private_jobs
  using btree (priority, run_at) include (id, task_id, job_queue_id)
  where (is_available = true);

create index jobs_no_queue_index on @schema@._private_jobs
  using btree (priority, run_at) include (id, task_id)
  where (is_available = true and job_queue_id is null);

create table @schema@._private_known_crontabs (
  identifier text not null,
  known_since timestamptz not null,
  last_execution timestamptz,
  constraint known_crontabs_pkey primary key (identifier)
);

create type @schema@.job_spec as (
  identifier text,
  payload json,
  queue_name text,
  run_at timestamptz,
  max_attempts smallint,
  job_key text,
  priority smallint,
  flags text[]
);

-- The read-only face of the jobs table for people and dashboards (payload left out on purpose: it can be
-- large and private). The aliases match Node's so pg_get_viewdef() reads the same on both.
create view @schema@.jobs as
  select
    jobs.id,
    job_queues.queue_name,
    tasks.identifier as task_identifier,
    jobs.priority,
    jobs.run_at,
    jobs.attempts,
    jobs.max_attempts,
    jobs.last_error,
    jobs.created_at,
    jobs.updated_at,
    jobs.key,
    jobs.locked_at,
    jobs.locked_by,
    jobs.revision,
    jobs.flags
  from @schema@._private_jobs as jobs
  inner join @schema@._private_tasks as tasks on tasks.id = jobs.task_id
  left join @schema@._private_job_queues as job_queues on job_queues.id = jobs.job_queue_id;

-- Row level security with no policies: roles that are not the owner (and do not bypass RLS) see nothing,
-- so the private tables are reached only through the functions.
alter table @schema@._private_job_queues enable row level security;
alter table @schema@._private_jobs enable row level security;
alter table @schema@._private_known_crontabs enable row level security;
alter table @schema@._private_tasks enable row level security;
