-- Operators' controls (backfill/control): pauses, and cancellations of queued and running jobs. Every change
-- notifies the channel "backfill:control" in its own transaction, so runners hear of it on commit: 'pauses' when
-- the pauses changed, 'cancel' when running jobs are to be cancelled. The payload names what changed, never the
-- jobs: a bulk cancel would not fit NOTIFY's 8000 bytes, and the runners read the open requests themselves.

-- name: pause
-- $1 kind, $2 name, $3 who, $4 reason. Pausing what is paused already updates who, when and why.
with paused as (
  insert into @schema@.backfill_pauses (kind, name, paused_by, reason)
  values ($1::text, $2::text, $3::text, $4::text)
  on conflict (kind, name) do update
     set paused_by = excluded.paused_by, paused_at = now(), reason = excluded.reason
  returning kind, name, paused_by, paused_at, reason
)
select paused.* from paused cross join (select pg_notify('backfill:control', 'pauses')) as notified

-- name: resume
-- $1 kind, $2 name. No row back: it was not paused.
with resumed as (
  delete from @schema@.backfill_pauses where kind = $1::text and name = $2::text
  returning kind, name, paused_by, paused_at, reason
)
select resumed.* from resumed cross join (select pg_notify('backfill:control', 'pauses')) as notified

-- name: pauses
select kind, name, paused_by, paused_at, reason from @schema@.backfill_pauses order by kind, name

-- name: lock_for_cancel
-- $1 job ids. Each job, locked for the rest of the transaction (a claim in flight finishes first), with who holds
-- it: owner 'alive' (a backfill worker whose heartbeat is fresh), 'dead' (one whose heartbeat stopped: its late
-- writes are fenced out), 'unknown' (a worker that never registered, e.g. Node's), or null (nobody: queued).
select j.id, j.locked_by,
       case
         when j.locked_by is null then null
         when w.worker_id is null then 'unknown'
         when w.declared_dead_at is null and w.last_heartbeat_at + w.dead_after > now() then 'alive'
         else 'dead'
       end as owner
  from @schema@._private_jobs as j
  left join @schema@.backfill_workers as w on w.worker_id = j.locked_by
 where j.id = any($1::bigint[])
 order by j.id
   for update of j

-- part: cancellation_values
-- What a cancellation keeps of a job row j (with its task t and queue q).
j.id, t.identifier, q.queue_name, j.priority, j.attempts, j.max_attempts, j.key, j.payload

-- name: cancel_now
-- $1 job ids (locked by lock_for_cancel: queued, or held by a dead worker), $2 who, $3 reason. Deletes them and
-- records them cancelled; a request recorded earlier for the same job becomes this cancellation. A job that keeps
-- its outcome (its flag backfill:result=<seconds>, else its task's published keep_result) has the cancellation
-- kept as its outcome, and its waiters are told, as the worker does for a job cancelled while it ran.
with removed as (
  delete from @schema@._private_jobs as j where j.id = any($1::bigint[])
  returning j.*
), ended_cancels as (
  select removed.*, $3::text as reason from removed
)@part:keep_cancelled_outcomes@
insert into @schema@.backfill_cancellations as c
  (job_id, task_identifier, queue_name, priority, attempts, max_attempts, job_key, payload, state, worker_id,
   requested_by, reason, ended_at)
select @part:cancellation_values@, 'cancelled', j.locked_by, $2::text, $3::text, now()
  from removed as j
  join @schema@._private_tasks as t on t.id = j.task_id
  left join @schema@._private_job_queues as q on q.id = j.job_queue_id
on conflict (job_id) do update
   set state = 'cancelled', ended_at = now(), worker_id = excluded.worker_id
returning c.job_id

-- part: keep_cancelled_outcomes
-- The outcomes of jobs an operator's cancellation deleted, for those that keep one: the CTE "ended_cancels" holds
-- their rows (j.*) and each one's reason. The retention is the job's flag backfill:result=<seconds>, else its
-- task's published keep_result (backfill_task_defaults); the waiters are told, as by the worker's keep_outcomes.
, kept as (
  insert into @schema@.backfill_job_results as results
         (job_id, task_identifier, queue_name, job_key, state, error, attempts, max_attempts, created_at,
          expires_at)
  select j.id, t.identifier, q.queue_name, j.key, 'cancelled', nullif(j.reason, ''), j.attempts, j.max_attempts,
         j.created_at, now() + retention.seconds * interval '1 second'
    from ended_cancels as j
    join @schema@._private_tasks as t on t.id = j.task_id
    left join @schema@._private_job_queues as q on q.id = j.job_queue_id
    cross join lateral (
      select coalesce(
        @part:flag_retention@,
        (select d.keep_result from @schema@.backfill_task_defaults as d where d.identifier = t.identifier)
      ) as seconds
    ) as retention
   where retention.seconds > 0
  on conflict (job_id) do update
     set state = 'cancelled', result = null, error = excluded.error, finished_at = now(),
         expires_at = excluded.expires_at
  returning pg_notify('backfill:results', results.job_id::text)
)

-- name: request_cancel
-- $1 job ids (locked by lock_for_cancel, running on live backfill workers), $2 who, $3 reason. Records the
-- requests with the worker each job runs on and tells the runners.
with requested as (
  insert into @schema@.backfill_cancellations as c
    (job_id, task_identifier, queue_name, priority, attempts, max_attempts, job_key, payload, state, worker_id,
     requested_by, reason)
  select @part:cancellation_values@, 'requested', j.locked_by, $2::text, $3::text
    from @schema@._private_jobs as j
    join @schema@._private_tasks as t on t.id = j.task_id
    left join @schema@._private_job_queues as q on q.id = j.job_queue_id
   where j.id = any($1::bigint[])
  on conflict (job_id) do update
     set state = 'requested', worker_id = excluded.worker_id, requested_by = excluded.requested_by,
         requested_at = now(), reason = excluded.reason, ended_at = null
  returning c.job_id
)
select requested.job_id from requested cross join (select pg_notify('backfill:control', 'cancel')) as notified

-- part: cancellation_columns
c.job_id, c.task_identifier, c.queue_name, c.priority, c.attempts, c.max_attempts, c.job_key, c.state,
c.worker_id, c.requested_by, c.requested_at, c.reason, c.ended_at

-- name: cancellations_of
-- $1 job ids.
select @part:cancellation_columns@ from @schema@.backfill_cancellations as c
 where c.job_id = any($1::bigint[])
 order by c.job_id

-- name: recent_cancellations
-- $1 state or null for any, $2 at most this many; newest first.
select @part:cancellation_columns@ from @schema@.backfill_cancellations as c
 where ($1::text is null or c.state = $1::text)
 order by c.requested_at desc, c.job_id desc
 limit $2::int

-- name: requested_of
-- $1 worker ids: the cancellations these workers must carry out (the runners' poll).
select c.job_id, c.worker_id, c.reason from @schema@.backfill_cancellations as c
 where c.state = 'requested' and c.worker_id = any($1::text[])

-- name: mark_cancelled
-- $1 job ids a runner cancelled. Also over 'finished': resolve_cancellations may have seen the row gone first.
update @schema@.backfill_cancellations set state = 'cancelled', ended_at = now()
 where job_id = any($1::bigint[]) and state in ('requested', 'finished')

-- name: resolve_cancellations
-- Requests the worker they name can no longer carry out (the runners' poll, any runner; SKIP LOCKED shares the
-- work): the job is gone (it ended on its own first: 'finished'); it is queued again (its attempt failed before
-- the cancel reached it) or held by a worker that died since (cancelled here, as a queued job is); or another
-- live backfill worker claimed it since (the request now names that worker, which is told).
with pending as (
  select c.job_id, c.worker_id from @schema@.backfill_cancellations as c
   where c.state = 'requested'
     for update skip locked
), current_jobs as (
  select pending.job_id, pending.worker_id as asked, j.id as present, j.locked_by,
         (w.declared_dead_at is not null or w.last_heartbeat_at + w.dead_after <= now()) as owner_dead
    from pending
    left join @schema@._private_jobs as j on j.id = pending.job_id
    left join @schema@.backfill_workers as w on w.worker_id = j.locked_by
), gone as (
  update @schema@.backfill_cancellations as c set state = 'finished', ended_at = now()
    from current_jobs
   where c.job_id = current_jobs.job_id and current_jobs.present is null
  returning c.job_id
), removed as (
  -- Re-checked on the row if a claim locked it meanwhile: locked_by is then set and owner_dead is null, so a job
  -- a live worker has just claimed stays; the next poll finds it under its new worker (moved, below).
  delete from @schema@._private_jobs as j
   using current_jobs
   where j.id = current_jobs.job_id and (j.locked_by is null or current_jobs.owner_dead is true)
  returning j.*
), ended_cancels as (
  select removed.*, c.reason
    from removed
    join @schema@.backfill_cancellations as c on c.job_id = removed.id
)@part:keep_cancelled_outcomes@, cancelled as (
  update @schema@.backfill_cancellations as c set state = 'cancelled', ended_at = now()
    from removed
   where c.job_id = removed.id
  returning c.job_id
), moved as (
  update @schema@.backfill_cancellations as c set worker_id = current_jobs.locked_by
    from current_jobs
   where c.job_id = current_jobs.job_id
     and current_jobs.owner_dead is false
     and current_jobs.locked_by is distinct from current_jobs.asked
  returning c.job_id
)
select (select count(*) from gone) as finished,
       (select count(*) from cancelled) as cancelled,
       (select count(*) from moved) as moved

-- name: declared_lanes
-- The custom lanes runners have declared (backfill_lanes, line "tasks"): a pause must name one of them, or a
-- built-in lane.
select name from @schema@.backfill_lanes order by name

-- name: record_throughput
-- $1 lanes, $2 succeeded, $3 failed (one element per lane): added to the current minute's row, and rows older
-- than a day pruned (the primary key leads with the minute, so the prune reads only what it deletes).
with pruned as (
  delete from @schema@.backfill_throughput where minute < now() - interval '1 day'
)
insert into @schema@.backfill_throughput as t (minute, lane, succeeded, failed)
select date_trunc('minute', now()), counts.lane, counts.succeeded, counts.failed
  from unnest($1::text[], $2::bigint[], $3::bigint[]) as counts(lane, succeeded, failed)
on conflict (minute, lane) do update
   set succeeded = t.succeeded + excluded.succeeded, failed = t.failed + excluded.failed

-- name: notify_cancel_requested
-- After resolve_cancellations moved requests to the workers now holding their jobs: tell the runners.
select pg_notify('backfill:control', 'cancel')
