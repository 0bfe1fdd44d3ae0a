-- Fragments about job rows that several statements share (JobSql in backfill/core/jobs.py). Each reads a job
-- row aliased "j".

-- part: job_columns
-- The columns of a job handed to Job.from_record: every statement that returns jobs selects these, and adds
-- what it can know of the task and queue names (joined, looked up, or left to Python). Payload and flags come as
-- text, so that no JSON codec is needed on the pool (a caller may pass their own).
j.id, j.job_queue_id, j.task_id, j.payload::text as payload, j.priority, j.run_at, j.attempts,
j.max_attempts, j.last_error, j.created_at, j.updated_at, j.key, j.locked_at, j.locked_by,
j.revision, j.flags::text as flags

-- part: named_job_columns
-- The job columns with the task identifier and queue name, over the joins of job_name_joins.
@part:job_columns@, t.identifier as task_identifier, q.queue_name

-- part: job_name_joins
-- The task and the queue of the job j, for their names. Deleted or updated rows still have their task and queue
-- rows (add_job never deletes those), so a statement returning what Graphile's functions changed can join them.
join @schema@._private_tasks as t on t.id = j.task_id
left join @schema@._private_job_queues as q on q.id = j.job_queue_id

-- part: job_state
-- JobState's rules (see its docstring), in its order: the first that holds wins. Both the reported state and the
-- state filters use this one expression, so a job listed as "retrying" is also found by --state retrying.
case
  when j.locked_at is not null then 'running'
  when j.attempts >= j.max_attempts then 'failed'
  when j.attempts > 0 and j.last_error is not null then 'retrying'
  when j.run_at > now() then 'scheduled'
  else 'waiting'
end

-- part: task_queue_state_filter
-- The filters of the admin's listings and bulk actions, over job_name_joins: $1 task, $2 queue, $3 state, each
-- skipped when null. The last line adds nothing to the state test but lets the planner see that failed jobs are
-- the dead jobs of the DLQ's partial index (backfill_dead_jobs, same predicate): listing the 50 failed jobs among
-- a million took 290 ms through the primary key, 0.3 ms through that index (bench.tools.dashboard_cost).
($1::text is null or t.identifier = $1::text)
and ($2::text is null or q.queue_name = $2::text)
and ($3::text is null or @part:job_state@ = $3::text)
and ($3::text is distinct from 'failed' or (j.attempts >= j.max_attempts and j.locked_at is null))

-- part: job_spec_fields
-- The fields of Graphile's job_spec from one JSON array "spec" (encoded by enqueue.job_spec_json_fields):
-- [identifier, payload text, queue, run_at, max_attempts, key, priority, flags]. The payload rides as JSON
-- *text*, so it is never re-serialised in Python and reaches the json column byte for byte; the array is read
-- as jsonb, parsed once rather than once per field extracted (json operators re-parse their input each time).
spec->>0, (spec->>1)::json, spec->>2, (spec->>3)::timestamptz, (spec->>4)::smallint,
spec->>5, (spec->>6)::smallint,
case when jsonb_typeof(spec->7) = 'array'
     then array(select jsonb_array_elements_text(spec->7)) end

-- part: available_priorities
-- The distinct priorities of the available jobs, as an array, for "jobs.priority = any(<this>) and jobs.run_at <=
-- now()" over the (priority, run_at) indexes where is_available. Without it, "run_at <= now()" cannot bound the
-- scan: priority comes first in the index, so every entry of every priority is read to find the due ones (1M jobs
-- scheduled an hour ahead: the whole index, 15-300 ms, on every empty poll). With one equality per priority, the
-- btree scans each priority's range from its start and stops at its first job due later, and it still returns
-- rows in (priority, run_at) order (it walks the array in ascending order), so a LIMIT stops the scan as before.
-- The array is found by a loose index scan, one descent per distinct priority (PostgreSQL 15 has no skip scan):
-- a few buffers for backfill's six priorities; a table using thousands of distinct priorities pays one descent
-- each, which is still less than reading the entries. It walks from the highest priority down, landing on each
-- priority's *latest* run_at: the front of a priority's range is where a busy queue keeps the entries of jobs just
-- claimed or completed, which every scan must step over until vacuum removes them. Landing there cost a busy
-- worker about 17% more PostgreSQL CPU per job than without this condition (bench/ceiling.py's statements, 100-job
-- batches, backend CPU from /proc/PID/schedstat); landing at the back, about 5%.
array(
  with recursive priorities(priority) as (
    (select p.priority from @schema@._private_jobs as p where p.is_available = true order by p.priority desc limit 1)
    union all
    select (
      select p.priority from @schema@._private_jobs as p
       where p.is_available = true and p.priority < priorities.priority
       order by p.priority desc
       limit 1
    )
      from priorities
     where priorities.priority is not null
  )
  select priorities.priority from priorities where priorities.priority is not null
)
