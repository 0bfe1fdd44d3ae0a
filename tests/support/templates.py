"""Migrated template databases: a test's database is a copy of one instead of a new database migrated from nothing.

Installing Graphile's schema runs twenty revisions' worth of DDL (about 0.3 s); ``CREATE DATABASE ... TEMPLATE``
of a database where that already ran costs what creating an empty one does, since an empty database is itself a
copy (of ``template1``). Graphile's and procrastinate's suites do the same.

A test session (one pytest process) builds its own templates, so whatever changed in the migrations since the last
run, none is ever stale. They are named ``bf_tpl_<session>_<key>``: ``<key>`` hashes the migration files and the
schema name (what a template holds), ``<session>`` names the session that owns it. Several sessions may use one
server at once (two suites on one machine), so a session never drops a template it does not own: for as long as
it runs it keeps one connection open whose ``application_name`` is ``bf_tpl_<session>``, and a template whose
owner has no such connection was left by a session that died (killed, interrupted) and is dropped by the next
one. The connection is opened before the session creates any template, so no live session's template is ever
without it.

PostgreSQL refuses to copy a database while anyone is connected to it; a built template is therefore closed to
connections (``allow_connections false``), so nothing, not even a stray psql, can stall the copies.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
from psycopg import sql

import backfill.core.migrations
from backfill.core.migrations.graphile import migrate
from backfill.core.schema import SchemaName
from tests.support.postgres import PostgresServer

PREFIX = "bf_tpl_"
_NAME = re.compile(rf"({PREFIX}[0-9a-f]{{12}})_[0-9a-f]{{12}}")  # the owner session's marker, then the key


class TemplateDatabases:
    """This session's templates on ``server``, built on first use, one per schema name."""

    def __init__(self, server: PostgresServer, marker: psycopg.Connection[Any], owner: str) -> None:
        self._server = server
        self._marker = marker  # connected as application_name=owner
        self._owner = owner
        self._built: dict[str, str] = {}  # schema name -> its template
        self._created: set[str] = set()  # every template this session created, built or not

    @classmethod
    @contextmanager
    def opened(cls, server: PostgresServer) -> Iterator[TemplateDatabases]:
        """The session's templates, all dropped on exit, after the templates of dead sessions were dropped.

        The marker connection is synchronous (psycopg) because it lives as long as the session, longer than any
        asyncio event loop of pytest-asyncio (one per test): an asyncpg connection belongs to the loop it was
        opened on.
        """
        owner = PREFIX + uuid.uuid4().hex[:12]
        # A server that closes idle sessions would close this one, which must stay for as long as we run.
        options = "-c idle_session_timeout=0"
        with psycopg.connect(server.admin_dsn, autocommit=True, application_name=owner, options=options) as marker:
            templates = cls(server, marker, owner)
            templates._drop_abandoned()
            try:
                yield templates
            finally:
                for name in sorted(templates._created):
                    templates._drop(name)

    async def template_for(self, schema: SchemaName) -> str:
        """The name of the template holding Graphile's schema in ``schema``, as :func:`migrate` installs it."""
        return self._built.get(schema.name) or await self._build(schema)

    async def _build(self, schema: SchemaName) -> str:
        name = f"{self._owner}_{_content_key(schema)}"
        # Recorded before it exists, so a build that fails halfway is dropped at the end of the session too.
        self._created.add(name)
        admin = await asyncpg.connect(self._server.admin_dsn)
        try:
            # Only an earlier build of this session that failed halfway can have left this name behind.
            await admin.execute(f'drop database if exists "{name}" with (force)')
            await admin.execute(f'create database "{name}"')
            connection = await asyncpg.connect(self._server.dsn_for(name))
            try:
                await migrate(connection, schema)
                await _compact_catalogs(connection)
            finally:
                await connection.close()
            # Our own backend may still be exiting: the first copy waits for it (PostgreSQL waits up to 5 s for
            # the template's sessions to go), and no one can connect after this.
            await admin.execute(f'alter database "{name}" with is_template true allow_connections false')
        finally:
            await admin.close()
        self._built[schema.name] = name
        return name

    def _drop_abandoned(self) -> None:
        """Drop the templates whose session is gone (no connection named after it), never a live session's."""
        pattern = PREFIX.replace("_", r"\_") + "%"
        # Listed first and checked one by one afterwards, each in its own statement: a template seen here was
        # created after its owner connected, so a later look at the connections finds the owner if it still runs.
        names = [row[0] for row in self._marker.execute(_LIST_TEMPLATES, [pattern]).fetchall()]
        for name in names:
            owned = _NAME.fullmatch(name)
            if owned is None:
                continue  # not a name we give: someone else's database
            alive = self._marker.execute(_OWNER_CONNECTED, [owned.group(1)]).fetchone()
            if alive is not None and not alive[0]:
                self._drop(name)

    def _drop(self, name: str) -> None:
        database = sql.Identifier(name)
        try:
            # A template database cannot be dropped until it is a template no more.
            self._marker.execute(sql.SQL("alter database {} is_template false").format(database))
        except psycopg.errors.InvalidCatalogName:
            return  # never created (a build failed early), or another session swept it first
        self._marker.execute(sql.SQL("drop database if exists {} with (force)").format(database))


_LIST_TEMPLATES = "select datname from pg_catalog.pg_database where datname like %s order by datname"
_OWNER_CONNECTED = "select exists (select from pg_catalog.pg_stat_activity where application_name = %s)"


async def _compact_catalogs(connection: asyncpg.Connection[Any]) -> None:
    """Rewrite the database's own system catalogs without the dead rows and free space the DDL left.

    Every copy writes each page of the template, so a smaller template is a faster copy: about 8.0 MB shrink to
    7.0 MB, and a copy took 0.25 s instead of 0.33 s (medians of 12, PostgreSQL 15 shared with other suites).
    The schema's own tables are left alone, so their statistics stay those of a freshly migrated database (never
    vacuumed) and the planner sees what it would have seen there; the shared catalogs belong to every database.
    """
    catalogs = await connection.fetchval(
        """
        select string_agg(oid::regclass::text, ', ')
          from pg_catalog.pg_class
         where relnamespace = 'pg_catalog'::regnamespace and relkind = 'r' and not relisshared
        """
    )
    await connection.execute(f"vacuum (full) {catalogs}")


def _content_key(schema: SchemaName) -> str:
    """A short hash of what a template holds: the schema name and every file of the Graphile migrations (the
    SQL, and the Python that decides which SQL runs)."""
    digest = hashlib.sha256(schema.name.encode())
    root = Path(backfill.core.migrations.__file__).parent
    for path in sorted(root.rglob("*")):
        if path.suffix in {".sql", ".py"} and path.is_file():
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]
