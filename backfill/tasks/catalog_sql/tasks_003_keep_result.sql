-- backfill's own migration line "tasks", id 3: the result retention a task declares (@backfill.task(keep_result=)),
-- in seconds; null: its jobs keep no outcome unless they ask. A client waiting on a job without the flag
-- backfill:result=... reads it to know whether an outcome will come, and an operator's cancellation of a queued
-- job reads it to keep the cancellation as the job's outcome.
alter table @schema@.backfill_task_defaults add column keep_result float8;
