-- backfill's own migration line "tasks", id 2: the custom lanes runners have declared (BACKFILL_LANES).
-- A client enqueueing into a lane no runner ever declared warns: such jobs wait until a runner serves the
-- lane, which is usually a typo in the lane's name. Rows are never deleted: a lane declared once, by a
-- runner that is merely down now, is not a typo. Fast and Bulk are built in and not listed.
create table @schema@.backfill_lanes (
  name text primary key,
  concurrency int not null,
  declared_by text not null,
  first_declared_at timestamptz not null default now(),
  last_declared_at timestamptz not null default now()
);
