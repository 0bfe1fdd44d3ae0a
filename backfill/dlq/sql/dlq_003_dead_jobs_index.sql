-- backfill's own migration line "dlq", id 3: an index of the dead jobs in Graphile's jobs table, for the mover's
-- periodic pass (move.sql, move_all: every BACKFILL_DLQ_SWEEP_INTERVAL_SECONDS, 5 s by default).
-- Without it the pass walks the primary key and every row behind it to find the rare dead job: with 1M jobs
-- scheduled an hour ahead, 0.5 s a pass, a tenth of a core for an idle runner. Graphile's indexes cannot help,
-- as they hold only available jobs (is_available), and a dead job is exactly one that is not available and not
-- locked. Its predicate is move.sql's, word for word, so the planner proves the index usable.
-- The index holds dead jobs only, so it costs a write only when a job dies (and the move takes it out again);
-- other rows pay the predicate's evaluation. Node workers ignore it: Graphile's revision-20 schema is unchanged
-- but for this extra index, which no Graphile statement names. Building it locks writes to the jobs table for
-- the length of one scan of it (about a second per million rows).
create index backfill_dead_jobs on @schema@._private_jobs (id)
  where attempts >= max_attempts and locked_at is null;
