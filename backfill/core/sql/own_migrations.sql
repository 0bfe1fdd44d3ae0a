-- Tracking backfill's own migration lines in backfill_migrations (OwnMigrationSql in
-- backfill/core/migrations/own.py), apart from Graphile's migrations table. The migrations themselves are files
-- beside their line's code.

-- name: schema_exists
-- $1 the schema name: backfill's tables go into Graphile's schema, which must be installed first.
select exists (select 1 from pg_namespace where nspname = $1::text)

-- name: applied_ids
-- $1 the line.
select id from @schema@.backfill_migrations where line = $1::text

-- name: lock_migrations
-- $1 backfill's advisory lock class, $2 the schema name. Transaction-level, so a crash or a failed statement
-- releases it. Every migrator of this schema (any line) queues here, which also makes `create table if not
-- exists` below race-free.
select pg_advisory_xact_lock($1::int, hashtext($2::text))

-- name: create_tracking_table
create table if not exists @schema@.backfill_migrations (
  line text,
  id int,
  name text not null,
  applied_at timestamptz not null default now(),
  primary key (line, id)
)

-- name: is_applied
-- $1 the line, $2 the migration's id. Looked at again under the lock: a migrator that held it before us may have
-- applied this one.
select exists (select 1 from @schema@.backfill_migrations where line = $1::text and id = $2::int)

-- name: record_applied
-- $1 the line, $2 the migration's id, $3 its name.
insert into @schema@.backfill_migrations (line, id, name) values ($1::text, $2::int, $3::text)
