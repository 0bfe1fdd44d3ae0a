"""A comparable picture of a Graphile Worker schema, read from the system catalogs.

pg_dump would also compare function bodies, comments on dump order and ownership noise; what the
contract fixes is the shape callers depend on, so each section below reads one kind of object through
the catalog functions PostgreSQL itself uses to describe it (``pg_get_indexdef``, ``pg_get_viewdef``...).

Every text that embeds the schema name is normalised to ``<schema>.`` so that two snapshots of
differently named schemas compare equal when their shapes are. Rows are plain tuples, sorted, so a
failed comparison can print exactly which rows differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

Row = tuple[Any, ...]

# Each query takes the schema's oid as $1. Columns listed in the order they are compared.
_SECTIONS: dict[str, str] = {
    # Every relation, whatever its kind, so an extra or missing object shows up even if no section below
    # looks at it in detail.
    "relations": """
        select c.relname, c.relkind, c.relpersistence, c.reloptions, c.relacl::text[]
          from pg_class as c
         where c.relnamespace = $1
    """,
    # Position counts only live columns: Node's history of added and dropped columns leaves gaps in
    # attnum, yet the column order (which `select *` and the row type of _private_jobs follow) must match.
    "columns": """
        select c.relname,
               row_number() over (partition by a.attrelid order by a.attnum) as position,
               a.attname,
               format_type(a.atttypid, a.atttypmod),
               a.attnotnull,
               case when a.attgenerated = '' then pg_get_expr(d.adbin, d.adrelid) end as column_default,
               case when a.attgenerated <> '' then pg_get_expr(d.adbin, d.adrelid) end as generated,
               a.attgenerated,
               a.attidentity,
               nullif(coll.collname, 'default') as collation
          from pg_attribute as a
          join pg_class as c on c.oid = a.attrelid
          left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
          left join pg_collation as coll on coll.oid = a.attcollation
         where c.relnamespace = $1 and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
    """,
    # From PostgreSQL 18 on, every NOT NULL is also a constraint row (contype 'n'), named after the table as it
    # was called at CREATE time: Node's migrations create `jobs` and rename it `_private_jobs`, so its names read
    # `jobs_payload_not_null1` where a direct install reads `_private_jobs_payload_not_null`. Nothing refers to
    # those names (PostgreSQL 17 and older have no such rows at all), so they compare by table and definition.
    "constraints": """
        select coalesce(c.relname, t.typname), case when con.contype <> 'n' then con.conname end,
               con.contype, pg_get_constraintdef(con.oid),
               con.condeferrable, con.condeferred, con.convalidated
          from pg_constraint as con
          left join pg_class as c on c.oid = con.conrelid
          left join pg_type as t on t.oid = con.contypid
         where con.connamespace = $1
    """,
    "indexes": """
        select t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisunique, x.indisprimary
          from pg_index as x
          join pg_class as i on i.oid = x.indexrelid
          join pg_class as t on t.oid = x.indrelid
         where t.relnamespace = $1
    """,
    "sequences": """
        select c.relname, format_type(s.seqtypid, null), s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
               s.seqcache, s.seqcycle, owner_table.relname, owner_column.attname, dep.deptype
          from pg_sequence as s
          join pg_class as c on c.oid = s.seqrelid
          left join pg_depend as dep
            on dep.classid = 'pg_class'::regclass and dep.objid = c.oid
           and dep.refclassid = 'pg_class'::regclass and dep.deptype in ('a', 'i')
          left join pg_class as owner_table on owner_table.oid = dep.refobjid
          left join pg_attribute as owner_column
            on owner_column.attrelid = dep.refobjid and owner_column.attnum = dep.refobjsubid
         where c.relnamespace = $1
    """,
    "view_columns": """
        select c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
          from pg_attribute as a
          join pg_class as c on c.oid = a.attrelid
         where c.relnamespace = $1 and c.relkind in ('v', 'm') and a.attnum > 0 and not a.attisdropped
    """,
    "view_definitions": """
        select c.relname, pg_get_viewdef(c.oid, true)
          from pg_class as c
         where c.relnamespace = $1 and c.relkind in ('v', 'm')
    """,
    # Stand-alone types only: the row types that every table and view implies are covered above, and
    # array types follow their element type.
    "types": """
        select t.typname, t.typtype, t.typacl::text[]
          from pg_type as t
          left join pg_class as c on c.oid = t.typrelid
         where t.typnamespace = $1 and t.typelem = 0 and (c.oid is null or c.relkind = 'c')
    """,
    "type_attributes": """
        select t.typname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod)
          from pg_type as t
          join pg_class as c on c.oid = t.typrelid and c.relkind = 'c'
          join pg_attribute as a on a.attrelid = c.oid
         where t.typnamespace = $1 and a.attnum > 0 and not a.attisdropped
    """,
    # Signatures and execution properties, not bodies: the bodies are where the two implementations are
    # allowed to differ.
    "functions": """
        select p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), l.lanname,
               p.prokind, p.proisstrict, p.provolatile, p.prosecdef, p.proconfig, p.proretset, p.proparallel,
               p.procost, p.prorows, p.proleakproof, p.proacl::text[]
          from pg_proc as p
          join pg_language as l on l.oid = p.prolang
         where p.pronamespace = $1
    """,
    "triggers": """
        select c.relname, tg.tgname, pg_get_triggerdef(tg.oid), tg.tgenabled
          from pg_trigger as tg
          join pg_class as c on c.oid = tg.tgrelid
         where c.relnamespace = $1 and not tg.tgisinternal
    """,
    "row_level_security": """
        select c.relname, c.relrowsecurity, c.relforcerowsecurity
          from pg_class as c
         where c.relnamespace = $1 and c.relkind in ('r', 'p')
    """,
    "policies": """
        select c.relname, pol.polname, pol.polcmd, pol.polpermissive,
               pg_get_expr(pol.polqual, pol.polrelid), pg_get_expr(pol.polwithcheck, pol.polrelid)
          from pg_policy as pol
          join pg_class as c on c.oid = pol.polrelid
         where c.relnamespace = $1
    """,
    "comments": """
        select pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
          from pg_description as d
         where (d.classoid = 'pg_class'::regclass
                and d.objoid in (select oid from pg_class where relnamespace = $1))
            or (d.classoid = 'pg_proc'::regclass
                and d.objoid in (select oid from pg_proc where pronamespace = $1))
            or (d.classoid = 'pg_type'::regclass
                and d.objoid in (select oid from pg_type where typnamespace = $1))
            or (d.classoid = 'pg_namespace'::regclass and d.objoid = $1)
    """,
}


@dataclass(frozen=True)
class CatalogSnapshot:
    """Sorted, normalised rows per section (see ``_SECTIONS``), plus the ``migrations`` table."""

    sections: Mapping[str, tuple[Row, ...]]
    migrations: tuple[tuple[int, bool], ...]

    def differences(self, other: CatalogSnapshot) -> list[str]:
        """Human-readable lines naming every row present on one side only; empty when equal."""
        lines: list[str] = []
        for name in sorted(set(self.sections) | set(other.sections)):
            mine, theirs = set(self.sections.get(name, ())), set(other.sections.get(name, ()))
            lines += [f"{name}: only left:  {row!r}" for row in sorted(mine - theirs, key=repr)]
            lines += [f"{name}: only right: {row!r}" for row in sorted(theirs - mine, key=repr)]
        if self.migrations != other.migrations:
            lines.append(f"migrations: left {self.migrations!r} != right {other.migrations!r}")
        return lines


async def take_snapshot(connection: asyncpg.Connection[Any], schema: str) -> CatalogSnapshot:
    """Read every section for ``schema`` (which must exist) on ``connection``."""
    namespace = await connection.fetchval("select oid from pg_namespace where nspname = $1::text", schema)
    if namespace is None:
        raise LookupError(f"schema {schema!r} does not exist")
    quoted = await connection.fetchval("select quote_ident($1::text)", schema)
    sections: dict[str, tuple[Row, ...]] = {}
    for name, query in _SECTIONS.items():
        rows = await connection.fetch(query, namespace)
        normalised = [tuple(_normalise(value, quoted) for value in row.values()) for row in rows]
        sections[name] = tuple(sorted(normalised, key=repr))
    return CatalogSnapshot(sections=sections, migrations=await read_migrations(connection, schema))


async def read_migrations(connection: asyncpg.Connection[Any], schema: str) -> tuple[tuple[int, bool], ...]:
    quoted = await connection.fetchval("select quote_ident($1::text)", schema)
    rows = await connection.fetch(f"select id, breaking from {quoted}.migrations order by id")
    return tuple((int(row["id"]), bool(row["breaking"])) for row in rows)


async def read_migration_timestamps(connection: asyncpg.Connection[Any], schema: str) -> dict[int, Any]:
    quoted = await connection.fetchval("select quote_ident($1::text)", schema)
    rows = await connection.fetch(f"select id, ts from {quoted}.migrations order by id")
    return {int(row["id"]): row["ts"] for row in rows}


def _normalise(value: Any, quoted_schema: str) -> Any:
    if isinstance(value, str):
        return value.replace(f"{quoted_schema}.", "<schema>.")
    if isinstance(value, list):
        return tuple(_normalise(item, quoted_schema) for item in value)
    return value
