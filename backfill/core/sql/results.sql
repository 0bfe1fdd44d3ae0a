-- Kept job outcomes (backfill_job_results, written by release.sql's keep_outcomes): their pruning, by the upkeep
-- of backfill/core/upkeep/result_pruner.py.

-- name: prune_results
-- $1 how many rows at most. The expired rows, oldest expiry first, read from the expires_at index; SKIP LOCKED lets
-- the upkeep of several processes share the work instead of queueing behind each other.
with expired as (
  select job_id from @schema@.backfill_job_results
   where expires_at < now()
   order by expires_at
   limit $1::int
     for update skip locked
), pruned as (
  delete from @schema@.backfill_job_results as results
   using expired
   where results.job_id = expired.job_id
  returning 1
)
select count(*) as pruned from pruned
