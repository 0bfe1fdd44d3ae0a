-- Choosing jobs to act on by filter (SelectionSql in backfill/core/admin/job_selection.py): counting them, and
-- walking their ids a page at a time for bulk actions.

-- name: count_jobs
select count(*) @part:selected_jobs@

-- name: job_id_page
-- $6 after this id, $7 the page size.
select j.id @part:selected_jobs@ and j.id > $6::bigint order by j.id limit $7::int

-- part: selected_jobs
-- $1 task, $2 queue, $3 state, $4 ids, each skipped when null; $5 only jobs the functions would act on: Graphile's
-- acting functions leave a job alone while its lock is younger than four hours (functions.sql).
  from @schema@._private_jobs as j
  @part:job_name_joins@
 where @part:task_queue_state_filter@
   and ($4::bigint[] is null or j.id = any($4::bigint[]))
   and (not $5::boolean or (j.locked_at is null or j.locked_at < now() - interval '4 hours'))
