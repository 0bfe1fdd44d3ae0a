-- The cron scheduler's statements (CronSql in backfill/core/upkeep/cron.py). Graphile's _private_known_crontabs
-- records, per cron item, when it became known and the last minute scheduled.

-- name: register
-- $1 identifiers seen now, $2 now: first sightings become known since now (no last execution, as Graphile).
insert into @schema@._private_known_crontabs (identifier, known_since)
select identifier, $2::timestamptz from unnest($1::text[]) as ids(identifier)
on conflict do nothing

-- name: read_known
-- $1 identifiers.
select identifier, known_since, last_execution from @schema@._private_known_crontabs
 where identifier = any($1::text[])

-- name: schedule
-- $1 is a JSON array of [<the job_spec_fields array>..., identifier, key mode] (cron._spec_row); a spec of
-- nulls is a job the transform dropped: its minute is recorded, no job added. $2 the minute.
-- The upsert is Graphile's, so a Node worker and this one agree on who scheduled a minute.
with specs as (
  select s.position, s.spec->>8 as identifier, s.spec->>9 as job_key_mode,
         row(@part:job_spec_fields@)::@schema@.job_spec as job_spec
    from jsonb_array_elements($1::jsonb) with ordinality as s(spec, position)
),
locks as (
  insert into @schema@._private_known_crontabs as known_crontabs (identifier, known_since, last_execution)
  select specs.identifier, $2::timestamptz, $2::timestamptz from specs
  on conflict (identifier) do update set last_execution = excluded.last_execution
  where known_crontabs.last_execution is null or known_crontabs.last_execution < excluded.last_execution
  returning known_crontabs.identifier
),
wanted as materialized (
  select specs.* from specs join locks on locks.identifier = specs.identifier
   where (specs.job_spec).identifier is not null
)
select wanted.identifier, job.id
  from wanted
  cross join lateral @schema@.add_job(
    (wanted.job_spec).identifier, (wanted.job_spec).payload, (wanted.job_spec).queue_name,
    (wanted.job_spec).run_at, (wanted.job_spec).max_attempts, (wanted.job_spec).job_key,
    (wanted.job_spec).priority, (wanted.job_spec).flags, wanted.job_key_mode
  ) as job
 order by wanted.position
