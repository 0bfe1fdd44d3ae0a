-- backfill's own migration line "dlq", id 2: what kind of error killed the job, and where it was raised.
-- Taken from the job's error history (backfill_job_errors) when the entry is written: the exception type of
-- the last attempt (what `backfill dlq stats` groups by) and its traceback (what `backfill dlq show` prints).
-- Null when the last failure was not a backfill worker's (a Node worker's, or a job failed by hand). Each
-- element of `errors` also carries its attempt's "exception_type"; tracebacks are kept for the last attempt
-- only, since one is up to 8 KiB and a job may fail 25 times.
alter table @schema@.backfill_dlq
  add column exception_type text,
  add column traceback text;
