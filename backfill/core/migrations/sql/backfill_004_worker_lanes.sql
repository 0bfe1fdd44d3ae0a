-- backfill's own migration line "core", id 4: which slice of the jobs table each registered worker fetches.
-- A process running several workers (one per lane, in backfill's runner) registers each under its own id;
-- `backfill workers` shows this label so that an operator can tell the Fast lane's worker from the Bulk one's.
-- Null for a worker that was given no label (a core worker fetching every job of its tasks).
alter table @schema@.backfill_workers add column lane text;
