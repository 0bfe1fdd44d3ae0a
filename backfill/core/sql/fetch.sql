-- Claiming jobs (FetchSql in backfill/core/run/queries.py): the fetch, the check an empty fetch needs, and what
-- the worker registers and reads about its tasks.
--
-- fetch_jobs and runnable_exists take the same parameters, in this order (Claims passes them):
--   $1  the worker id (locked_by)
--   $2  the identifiers of the tasks the worker runs
--   $3  the most jobs to claim
--   $4… the fetch filter's flag arrays, each only when the filter has it, in this order: the forbidden flags (a
--       job carrying any is skipped), then the required flags (a job must carry at least one). Numbered by
--       queries.FLAG_PARAMETERS, which both the clauses and Claims' arguments follow.
--   last, only in the variant used while named queues are paused: the paused queue names. Their jobs are left
--       alone by leaving their queues out of the queue locks below (queries.with_paused_queues puts the clause
--       in place of /* paused queues */). Without a pause the worker runs the statement without the clause, so
--       an unpaused fetch costs exactly what it did.
-- The fetch filter's clauses (priority bounds as integer literals, fixed for a worker's life, so the planner
-- can use the (priority, run_at) index range; the flag conditions on $4/$5) take the place of the comment
-- /* fetch filter */ (queries.with_fetch_filter): without a filter it stays a comment.

-- name: fetch_jobs
-- Eligible named queues are locked up front with SKIP LOCKED, so two workers fetching at once never take jobs
-- of the same queue. A batch may still find several jobs of one queue; only the first (by priority, run_at) is
-- kept, because a named queue runs one job at a time. The rest stay untouched (never updated), and their queue
-- stays locked by the kept job until it finishes.
-- Task ids are resolved inside the statement from our identifiers, so a task row re-created under a new id
-- (after GC_TASK_IDENTIFIERS cleanup, say) is picked up without a restart.
-- The task identifier is mapped from task_id in Python (the worker knows its tasks); the queue name is looked
-- up only for jobs that have a queue. Per-row lookups of both cost about a tenth of a 500-job fetch.
with candidates as (
  select jobs.id, jobs.job_queue_id, jobs.priority, jobs.run_at
    from @schema@._private_jobs as jobs
   where @part:runnable@
     and (
       jobs.job_queue_id is null
       or jobs.job_queue_id in (
         select job_queues.id from @schema@._private_job_queues as job_queues
          where job_queues.is_available = true /* paused queues */
            for update skip locked
       )
     )
     /* fetch filter */
   order by jobs.priority asc, jobs.run_at asc
   limit $3::int
     for update skip locked
), chosen as (
  -- Jobs outside named queues all go; of each named queue, only the first (distinct on sorts just those rows,
  -- not the whole batch).
  select candidates.id, candidates.job_queue_id from candidates where candidates.job_queue_id is null
  union all
  select first_in_queue.id, first_in_queue.job_queue_id
    from (
      select distinct on (candidates.job_queue_id) candidates.id, candidates.job_queue_id
        from candidates
       where candidates.job_queue_id is not null
       order by candidates.job_queue_id, candidates.priority, candidates.run_at, candidates.id
    ) as first_in_queue
), locked_queues as (
  update @schema@._private_job_queues as job_queues
     set locked_by = $1::text, locked_at = now()
    from chosen
   where chosen.job_queue_id is not null
     and job_queues.id = chosen.job_queue_id
)
-- The chosen rows by their ids in the primary key, not by a join with "chosen": the planner cannot see how many
-- rows "chosen" holds, and on a table of some 20,000 jobs it joined them by scanning the whole table (3.6 ms of a
-- 100-job claim's 7.4). The rows are already locked by "candidates", and the update needs nothing else of them.
update @schema@._private_jobs as j
   set attempts = j.attempts + 1,
       locked_by = $1::text,
       locked_at = now()
 where j.id = any(array(select chosen.id from chosen))
returning @part:job_columns@,
          case when j.job_queue_id is not null then
            (select q.queue_name from @schema@._private_job_queues as q where q.id = j.job_queue_id)
          end as queue_name

-- name: runnable_exists
-- The fetch's conditions without its locks, to tell "nothing runnable" from "the runnable rows were row-locked
-- by a concurrent fetch": that fetch locks every available named queue for the length of its statement, so an
-- empty claim alone does not prove that nothing is left (run_once relies on this). It takes the fetch's
-- arguments ($1 worker id and $3 limit only typed here) so that the flag arrays keep their numbers.
select exists (
  select 1
    from @schema@._private_jobs as jobs
   where @part:runnable@
     and (
       jobs.job_queue_id is null
       or jobs.job_queue_id in (
         select job_queues.id from @schema@._private_job_queues as job_queues
          where job_queues.is_available = true /* paused queues */
       )
     )
     /* fetch filter */
     and $1::text is not null
   limit $3::int
) as runnable

-- part: runnable
-- What makes a job of ours runnable now, but for its named queue (the fetch locks the queue, the check does not).
-- The priority condition changes no result (every available job has one of those priorities): it is what lets
-- the scan stop at the first job due later instead of reading every scheduled one (jobs.sql says how).
jobs.is_available = true
and jobs.priority = any(@part:available_priorities@)
and jobs.run_at <= now()
and jobs.task_id = any(array(select t.id from @schema@._private_tasks as t where t.identifier = any($2::text[])))

-- name: claim_session
-- Run once on the fetcher's pinned connection: claims commit without waiting for the WAL flush (claims.py says
-- why that is safe).
set synchronous_commit = off

-- name: ensure_tasks
-- Register our identifiers ($1) like add_job does (the not-exists guard keeps identity values), so a job
-- enqueued later by raw INSERT can reference them.
insert into @schema@._private_tasks (identifier)
select wanted.identifier
  from unnest($1::text[]) as wanted(identifier)
 where not exists (select 1 from @schema@._private_tasks as t where t.identifier = wanted.identifier)
on conflict do nothing

-- name: task_ids
-- The ids of our tasks ($1 identifiers), to map a claimed job's task_id back to its identifier.
select id, identifier from @schema@._private_tasks where identifier = any($1::text[])
