-- backfill's own migration line "control", id 2: what the admin API records.

-- Every action taken through the admin API: who (as the API knows them: token or loopback, address, the name
-- they gave), what (the action and its target: ids or a filter, never a payload), when, and how many rows it
-- touched. Kept until someone deletes it; the API lists it newest first.
create table @schema@.backfill_audit (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  actor text not null,
  action text not null,
  target jsonb not null default '{}',
  count int not null,
  dry_run boolean not null default false
);
create index backfill_audit_at on @schema@.backfill_audit (at);

-- Attempts that ended, per minute and lane, added up by every runner (each flushes its counts every few
-- seconds): the fleet's throughput and failure rate over recent minutes, which Graphile's table cannot give (it
-- deletes finished jobs). Rows older than a day are pruned by the runners as they write.
create table @schema@.backfill_throughput (
  minute timestamptz not null,
  lane text not null,
  succeeded bigint not null default 0,
  failed bigint not null default 0,
  primary key (minute, lane)
);
