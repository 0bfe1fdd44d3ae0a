"""What exists in a schema: a table, a column of a table.

Graphile's schema may not be installed yet (``migrate`` asks first), and backfill's own tables may be missing or
older than this backfill (a database migrated by Node, or by an earlier release): the readers that depend on
them ask here and fall back, rather than fail.
"""

from __future__ import annotations

from backfill.core.db import Executor
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements


class CatalogSql(Statements, file=("backfill.core.sql", "catalog.sql")):
    """Catalog look-ups (see catalog.sql)."""

    table_exists: str
    column_exists: str


async def table_exists(connection: Executor, schema: SchemaName, table: str) -> bool:
    """Whether ``schema`` holds ``table``."""
    return bool(await connection.fetchval(CatalogSql.for_schema(schema).table_exists, table))


async def column_exists(connection: Executor, schema: SchemaName, table: str, column: str) -> bool:
    """Whether ``schema`` holds ``table`` and it has ``column``."""
    return bool(await connection.fetchval(CatalogSql.for_schema(schema).column_exists, table, column))
