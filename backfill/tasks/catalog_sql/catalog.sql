-- The task catalog (backfill/tasks/catalog.py): runners publish their tasks' defaults in
-- backfill_task_defaults (migration line "tasks"); clients look up a task they did not import.

-- name: publish
-- $1 task identifiers and, in the same order, $2 priorities, $3 queue names, $4 lanes, $5 retry-policy flags,
-- $6 max attempts, $8 result retentions in seconds (nulls where a task has no such default); $7 who publishes
-- them (host:pid).
insert into @schema@.backfill_task_defaults as d
       (identifier, priority, queue_name, lane, retry_flag, max_attempts, published_by, keep_result)
select * from unnest($1::text[], $2::smallint[], $3::text[], $4::text[], $5::text[], $6::smallint[],
                     array_fill($7::text, array[cardinality($1::text[])]), $8::float8[])
on conflict (identifier) do update
   set priority = excluded.priority, queue_name = excluded.queue_name, lane = excluded.lane,
       retry_flag = excluded.retry_flag, max_attempts = excluded.max_attempts,
       published_by = excluded.published_by, published_at = now(), keep_result = excluded.keep_result

-- name: lookup
-- $1 a task identifier.
select priority, queue_name, lane, retry_flag, max_attempts, keep_result
  from @schema@.backfill_task_defaults
 where identifier = $1::text
