-- The dead-letter API's statements over the entries: get, list, delete, annotate and stats (backfill/dlq/queries.py).
-- The filter and the note stamp are parts that batches.sql and requeue.sql include too.

-- part: entry_columns
-- An entry aliased d, payload and flags as text, so callers' pools need no JSON codec (as in the core's queries).
d.id, d.job_id, d.task_identifier, d.payload::text as payload, d.queue_name, d.priority, d.job_key,
d.flags::text as flags, d.attempts, d.max_attempts, d.errors::text as errors, d.last_error, d.reason,
d.created_at, d.run_at, d.failed_at, d.requeue_count, d.requeued_at, d.requeued_job_id, d.state, d.notes,
d.updated_at, d.exception_type, d.traceback

-- part: entry_filter
-- A DeadLetterFilter over an entry aliased d. Its parameters are always $1..$7, in the order
-- filter_arguments (backfill/dlq/queries.py) gives them, and every statement that includes it numbers its own
-- parameters from $8; each condition is skipped when its parameter is null:
--   $1 task identifier, $2 queue name, $3 failed at or after, $4 failed before,
--   $5 text in the last error or any recorded error, $6 state ('dead' or 'requeued'),
--   $7 the last attempt's exception type, exactly (an entry with none recorded never matches it).
-- The error text is matched with strpos, not LIKE, so '%' and '_' in what a person pasted are plain characters.
($1::text is null or d.task_identifier = $1::text)
and ($2::text is null or d.queue_name = $2::text)
and ($3::timestamptz is null or d.failed_at >= $3::timestamptz)
and ($4::timestamptz is null or d.failed_at < $4::timestamptz)
and ($5::text is null
     or strpos(lower(coalesce(d.last_error, '')), lower($5::text)) > 0
     or exists (
       select 1 from jsonb_array_elements(d.errors) as e
        where strpos(lower(coalesce(e->>'error', '')), lower($5::text)) > 0
     ))
and ($6::text is null or d.state = $6::text)
and ($7::text is null or d.exception_type = $7::text)

-- part: note_stamp
-- A note is appended on a line of its own after this stamp (UTC), so the notes read as a log of what was done:
-- concat_ws(E'\n', <notes>, @part:note_stamp@ || ' ' || <note>).
to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS"Z"')

-- name: get
-- $1 entry id.
select @part:entry_columns@
  from @schema@.backfill_dlq as d
 where d.id = $1::bigint

-- name: list
-- $1..$7 the filter, $8 and $9 the cursor's (failed_at, id) or nulls for the first page, $10 the page size.
-- Newest failure first; resumed strictly after the cursor's (failed_at, id), so pages neither repeat nor skip an
-- entry whatever is moved in between (new failures land before the first page). An entry that dies again after
-- a requeue gets a new failed_at, and moves to the front.
select @part:entry_columns@
  from @schema@.backfill_dlq as d
 where @part:entry_filter@
   and ($8::timestamptz is null or (d.failed_at, d.id) < ($8::timestamptz, $9::bigint))
 order by d.failed_at desc, d.id desc
 limit $10::int

-- name: delete_ids
-- $1 entry ids.
delete from @schema@.backfill_dlq as d where d.id = any($1::bigint[]) returning d.id

-- name: delete_filtered
-- $1..$7 the filter.
delete from @schema@.backfill_dlq as d where @part:entry_filter@ returning d.id

-- name: annotate
-- $1 entry id, $2 the note.
update @schema@.backfill_dlq as d
   set notes = concat_ws(E'\n', d.notes, @part:note_stamp@ || ' ' || $2::text), updated_at = now()
 where d.id = $1::bigint
returning @part:entry_columns@

-- name: totals
select count(*)::int as total,
       count(*) filter (where d.state = 'dead')::int as dead,
       count(*) filter (where d.state = 'requeued')::int as requeued,
       min(d.failed_at) as oldest_failed_at,
       max(d.failed_at) as newest_failed_at
  from @schema@.backfill_dlq as d

-- name: by_task
select d.task_identifier as value, count(*)::int as count
  from @schema@.backfill_dlq as d
 group by d.task_identifier
 order by count(*) desc, d.task_identifier

-- name: by_reason
select d.reason as value, count(*)::int as count
  from @schema@.backfill_dlq as d
 group by d.reason
 order by count(*) desc, d.reason

-- name: by_exception_type
-- An entry whose last attempt recorded no exception type (a Node worker's, or a job failed by hand) is counted
-- under UNKNOWN_TYPE (backfill/dlq/queries.py).
select coalesce(d.exception_type, @unknown_type@) as value, count(*)::int as count
  from @schema@.backfill_dlq as d
 group by 1
 order by count(*) desc, 1

-- name: top_errors
-- The ten commonest first lines of the last error, each cut at 200 characters.
select first_line as value, count(*)::int as count
  from @schema@.backfill_dlq as d
 cross join lateral (
   select left(split_part(coalesce(d.last_error, ''), E'\n', 1), 200) as first_line
 ) as e
 group by first_line
 order by count(*) desc, first_line
 limit 10
