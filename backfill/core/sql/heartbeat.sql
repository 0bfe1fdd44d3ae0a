-- A worker's row in backfill_workers (HeartbeatSql in backfill/core/run/heartbeat.py): registered at start-up,
-- touched every heartbeat, deleted at a clean shutdown. Sweepers declare a worker dead when its row goes stale.

-- name: register
-- $1 worker id, $2 hostname, $3 pid, $4 dead_after, $5 concurrency, $6 task identifiers, $7 backfill's version,
-- $8 lane. On conflict (register called twice) the row keeps its started_at: it is the same life of the worker.
insert into @schema@.backfill_workers (worker_id, hostname, pid, dead_after, concurrency, tasks, version, lane)
values ($1::text, $2::text, $3::int, $4::interval, $5::int, $6::text[], $7::text, $8::text)
on conflict (worker_id) do update
   set hostname = excluded.hostname,
       pid = excluded.pid,
       last_heartbeat_at = now(),
       dead_after = excluded.dead_after,
       concurrency = excluded.concurrency,
       tasks = excluded.tasks,
       version = excluded.version,
       lane = excluded.lane,
       declared_dead_at = null

-- name: beat
-- $1 worker id. A row declared dead takes no more beats: the worker must learn that its jobs were released.
update @schema@.backfill_workers set last_heartbeat_at = now()
 where worker_id = $1::text and declared_dead_at is null

-- name: deregister
-- $1 worker id.
delete from @schema@.backfill_workers where worker_id = $1::text
