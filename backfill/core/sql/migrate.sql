-- The statements around Graphile's migrations (MigrateSql in backfill/core/migrations/graphile.py): what revision
-- a schema is at, and claiming a revision the way graphile-worker@0.18.0 does, so Node and Python migrators can
-- race safely. The migrations themselves are files in backfill/core/migrations/sql/.

-- name: server_version
select current_setting('server_version_num')::int

-- name: current_revision
select max(id) from @schema@.migrations

-- name: read_revisions
select id, breaking from @schema@.migrations order by id

-- name: lock_schema_creation
-- $1 the schema name. `if not exists` is not race-free in PostgreSQL (two creators can both pass the check and one
-- then hits a unique violation in the catalog), so backfill migrators serialise on this lock while creating the
-- schema and its migrations table.
select pg_advisory_xact_lock(hashtext('backfill:migrate:' || $1::text))

-- name: create_schema
create schema if not exists @schema@

-- name: create_migrations_table
create table if not exists @schema@.migrations (
  id int primary key,
  ts timestamptz not null default now(),
  breaking boolean not null default false
)

-- name: insert_revisions
-- $1 the revisions to claim, $2 the breaking ones among all revisions. A concurrent migrator that inserted one of
-- them first makes this fail with a unique violation: someone else did it.
insert into @schema@.migrations (id, breaking)
select rev, rev = any($2::int[]) from unnest($1::int[]) as rev

-- name: notify_migrated
-- $1 {"migrationNumber":N,"breaking":B}, as Node workers expect it.
select pg_notify('worker:migrate', $1::text)
