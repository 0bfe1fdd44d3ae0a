-- Requeue (backfill/dlq/requeue.py): dead-letter entries become jobs again through Graphile's own add_jobs and
-- add_job, in the caller's transaction. The statements that add jobs take $1 the entry id(s), and the caller's
-- overrides (null: the entry's own, or now for run_at): $2 run_at, $3 max_attempts, $4 priority.

-- part: locked_entry_columns
d.id, d.state, d.requeued_job_id, d.job_key, d.task_identifier, d.queue_name

-- part: requeued_flags
-- The new job's flags as text[]: the entry's d.flags (Graphile writes {"flag": true}), without the suspect flag
-- (the last death was not a crash) and any dead-letter flag, plus the dead-letter flag naming this entry (which
-- sends the job back to it if it dies again).
array(
  select f.key from jsonb_each(case when jsonb_typeof(d.flags) = 'object' then d.flags end) as f
   where f.value = 'true'::jsonb
     and f.key <> @suspect_flag@
     and f.key not like (@dlq_flag_prefix@ || '%')
   order by f.key
) || (@dlq_flag_prefix@ || d.id::text)

-- part: added_job_columns
j.id, j.flags::text as flags, j.priority, j.max_attempts, j.run_at, j.key, j.revision

-- name: lock_ids
-- $1 entry ids. Re-read under the lock: a concurrent requeue or delete that committed first is seen here.
select @part:locked_entry_columns@
  from @schema@.backfill_dlq as d
 where d.id = any($1::bigint[])
 order by d.id
   for update

-- name: lock_filtered
-- $1..$7 the filter (the entry_filter part of entries.sql); only dead entries.
select @part:locked_entry_columns@
  from @schema@.backfill_dlq as d
 where @part:entry_filter@
   and d.state = 'dead'
 order by d.id
   for update

-- name: add_keyless
-- $1 entry ids (none with a job key: they cannot collide, so one add_jobs call takes them all).
select @part:added_job_columns@
  from @schema@.add_jobs(
    array(
      select row(
        d.task_identifier, d.payload, d.queue_name, $2::timestamptz,
        coalesce($3::int, d.max_attempts)::smallint, null::text,
        coalesce($4::int, d.priority)::smallint, @part:requeued_flags@
      )::@schema@.job_spec
        from @schema@.backfill_dlq as d
       where d.id = any($1::bigint[])
       order by d.id
    ),
    false
  ) as j

-- name: add_keyed
-- $1 one entry id. unsafe_dedupe: a newer job holding the key is left as it is (replace would overwrite it
-- with the dead payload); the caller sees another job's id come back and rolls its savepoint back.
select @part:added_job_columns@
  from @schema@.backfill_dlq as d
 cross join lateral @schema@.add_job(
   identifier => d.task_identifier, payload => d.payload, queue_name => d.queue_name,
   run_at => $2::timestamptz, max_attempts => coalesce($3::int, d.max_attempts),
   job_key => d.job_key, priority => coalesce($4::int, d.priority), flags => @part:requeued_flags@,
   job_key_mode => 'unsafe_dedupe'
 ) as j
 where d.id = $1::bigint

-- name: mark
-- $1 entry ids and $2 their new jobs' ids (same order), $3 a note to append, or null.
update @schema@.backfill_dlq as entry
   set state = 'requeued',
       requeue_count = entry.requeue_count + 1,
       requeued_at = now(),
       requeued_job_id = r.job_id,
       notes = case when $3::text is null then entry.notes
                    else concat_ws(E'\n', entry.notes, @part:note_stamp@ || ' ' || $3::text) end,
       updated_at = now()
  from unnest($1::bigint[], $2::bigint[]) as r(entry_id, job_id)
 where entry.id = r.entry_id
