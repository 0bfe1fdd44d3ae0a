-- The custom lanes runners declared (backfill/lanes/catalog.py), in backfill_lanes (migration line "tasks").

-- name: declare
-- $1 lane names, $2 their concurrencies, $3 who declares them (host:pid).
insert into @schema@.backfill_lanes as l (name, concurrency, declared_by)
select * from unnest($1::text[], $2::int[], array_fill($3::text, array[cardinality($1::text[])]))
on conflict (name) do update
   set concurrency = excluded.concurrency, declared_by = excluded.declared_by, last_declared_at = now()

-- name: declared
-- Every runner publishes its task defaults at start: none there means no runner has started against this
-- schema yet (a fresh deployment enqueueing first), and then no lane is "undeclared" yet either.
select array(select name from @schema@.backfill_lanes) as lanes,
       exists (select 1 from @schema@.backfill_task_defaults) as runners_seen
