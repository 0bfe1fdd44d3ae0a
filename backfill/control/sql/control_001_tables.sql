-- backfill's own migration line "control", id 1: what operators asked of the queue, pauses and cancellations.
-- Beside Graphile's tables, never in them: a Node worker sharing the schema sees the schema it expects (and does
-- not honour either; docs/how-to/operator-controls.md says what that means).

-- Work no backfill runner may start: a whole lane, a named queue, or a task, until the row is deleted. Runners
-- read the table at start, on every NOTIFY on the channel "backfill:control", and every poll (one second).
create table @schema@.backfill_pauses (
  kind text not null check (kind in ('lane', 'queue', 'task')),
  -- Graphile's own bounds on task identifiers and queue names (tasks_identifier_check, queue_name_check).
  name text not null check (length(name) between 1 and 128),
  paused_by text not null,
  paused_at timestamptz not null default now(),
  reason text,
  primary key (kind, name)
);

-- One row per cancelled job, kept after Graphile's row is gone so that "who cancelled it, when, and what was
-- it" can still be answered. A queued job is deleted and recorded as 'cancelled' in one transaction. A running
-- one is recorded as 'requested' with the worker that runs it, which is told by NOTIFY (and finds it by polling
-- if the notification was lost), cancels the handler, completes the job, and marks it 'cancelled'. 'finished':
-- the job ended on its own before the cancellation reached it.
create table @schema@.backfill_cancellations (
  job_id bigint primary key,
  task_identifier text not null,
  queue_name text,
  priority int not null,
  attempts int not null,
  max_attempts int not null,
  job_key text,
  payload json,
  state text not null check (state in ('requested', 'cancelled', 'finished')),
  worker_id text,
  requested_by text not null,
  requested_at timestamptz not null default now(),
  reason text,
  ended_at timestamptz
);

-- The runners' poll reads the requests still open: a partial index keeps that read as small as the open set.
create index backfill_cancellations_requested on @schema@.backfill_cancellations (worker_id)
  where state = 'requested';
create index backfill_cancellations_requested_at on @schema@.backfill_cancellations (requested_at);
