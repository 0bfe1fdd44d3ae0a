-- backfill's own migration line "core", id 3: what kind of error each failed attempt raised, and where.
-- Graphile's last_error is text only ("KeyError: 'email'"); triage groups by the exception's type and reads
-- its traceback, so both are kept beside the error, in backfill's table (Graphile's tables are not changed).
-- Null for failures that were not an exception of the handler's (an interrupted job, a Node worker's
-- attempt is not in this table at all).
alter table @schema@.backfill_job_errors
  -- "KeyError", or "module.Class" for exceptions that are not builtins: what Python's traceback prints.
  add column exception_type text,
  -- At most 8 KiB (the tail is kept): the frames nearest the raise, and the message.
  add column traceback text;
