-- Installing everything (backfill/migrations.py).

-- name: other_queues
-- $1 the schema just installed. The other schemas of this database that hold a Graphile queue: a schema
-- installed from nothing beside one is usually a GRAPHILE_WORKER_SCHEMA typo.
select namespace.nspname as name
  from pg_catalog.pg_class as relation
  join pg_catalog.pg_namespace as namespace on namespace.oid = relation.relnamespace
 where relation.relname = '_private_jobs' and relation.relkind = 'r' and namespace.nspname <> $1::text
 order by 1
