-- What exists in the schema (CatalogSql in backfill/core/catalog.py), for code that must work on a schema that
-- is not installed yet, or was migrated by Node or by an older backfill.

-- name: table_exists
-- $1 the name of a table (or any relation) in the schema.
select to_regclass(quote_ident(@schema_name@) || '.' || quote_ident($1::text)) is not null

-- name: column_exists
-- $1 a table of the schema, $2 a column: whether the table exists and has it.
select exists (
  select 1 from pg_attribute
   where attrelid = to_regclass(quote_ident(@schema_name@) || '.' || quote_ident($1::text))
     and attname = $2::text
     and not attisdropped
)
