"""Throwaway databases for tests: a migrated template per schema, a copy of it per test, dropped after.

Installing everything backfill installs (Graphile's schema and backfill's own migration lines, as
:func:`backfill.migrations.migrate_all` does) runs hundreds of statements of DDL; ``CREATE DATABASE ... TEMPLATE``
of a database where that already ran costs what creating an empty database costs (an empty database is itself a
copy of ``template1``). So each session migrates one template per schema name, on first use, and every test gets
a copy. A template is closed to connections once built (``allow_connections false``): PostgreSQL refuses to copy
a database anyone is connected to, so nothing, not even a stray psql, can stall the copies.

Every database is dropped ``WITH (FORCE)`` (PostgreSQL 13 and later), which ends the connections a test left
open. Names are ``backfill_test_<random>`` and, for templates, ``backfill_test_tpl_<random>``: a session that is
killed before its end leaves them behind, to be dropped by hand.

The work is asynchronous (asyncpg) but the methods here are plain functions: a session outlives the event loop
of any test, and fixtures that create and drop databases are synchronous, so that any test may use them. Each
call runs its coroutine to completion in a short-lived thread with a loop of its own, never on the caller's loop.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from backfill.core import ConfigurationError, SchemaName
from backfill.migrations import migrate_all
from backfill.testing.server import DatabaseServer

T = TypeVar("T")

DATABASE_PREFIX = "backfill_test_"
TEMPLATE_PREFIX = "backfill_test_tpl_"


@dataclass(frozen=True)
class ThrowawayDatabase:
    """One test's database: its ``name``, the ``url`` to connect to it and the ``schema`` migrated in it."""

    name: str
    url: str
    schema: SchemaName


class ThrowawayDatabases:
    """Creates and drops migrated databases on one server (see the module docstring). Not thread-safe: one per
    session, used from the session's thread."""

    def __init__(self, server: DatabaseServer) -> None:
        self.server = server
        self._templates: dict[SchemaName, str] = {}  # built, by schema name
        self._created: set[str] = set()  # every database created and not dropped yet, templates included

    @classmethod
    def start(cls, url: str | None, *, source: str = "DATABASE_URL") -> ThrowawayDatabases:
        """On the server of ``url``, or on a new embedded server when ``url`` is empty (see
        :meth:`DatabaseServer.start`)."""
        return cls(DatabaseServer.start(url, source=source))

    def create(self, schema: SchemaName | str | None = None) -> ThrowawayDatabase:
        """A new database with everything backfill installs in ``schema`` (default: ``GRAPHILE_WORKER_SCHEMA``,
        else ``graphile_worker``), as a copy of this session's template for that schema."""
        schema_name = SchemaName.coerce(schema)
        template = self._templates.get(schema_name) or self._build_template(schema_name)
        name = DATABASE_PREFIX + uuid.uuid4().hex[:16]
        self._created.add(name)  # before it exists: a create that fails halfway is still cleaned up
        _blocking(lambda: self._create_database(name, template))
        return ThrowawayDatabase(name, self.server.dsn_for(name), schema_name)

    def drop(self, database: ThrowawayDatabase | str) -> None:
        """Drop a database made here, whatever connections to it remain. Dropping it twice does nothing, and so
        does dropping a database this object did not make: a test server may hold databases that are not ours."""
        name = database if isinstance(database, str) else database.name
        if name not in self._created:
            return
        _blocking(lambda: self._admin(f"drop database if exists {_quoted(name)} with (force)"))
        self._created.discard(name)

    @contextmanager
    def database(self, schema: SchemaName | str | None = None) -> Iterator[ThrowawayDatabase]:
        """:meth:`create` on entry and :meth:`drop` on exit."""
        created = self.create(schema)
        try:
            yield created
        finally:
            self.drop(created)

    def close(self) -> None:
        """Drop every database and template still here, then stop the server if this session started it."""
        try:
            for name in sorted(self._created - set(self._templates.values())):
                self.drop(name)
            for template in sorted(self._templates.values()):
                _blocking(lambda: self._drop_template(template))  # noqa: B023 - run before the loop moves on
                self._created.discard(template)
            self._templates.clear()
        finally:
            self.server.stop()

    # -- the work, on the helper thread's loop ------------------------------------------------------------------

    def _build_template(self, schema: SchemaName) -> str:
        name = TEMPLATE_PREFIX + uuid.uuid4().hex[:16]
        self._created.add(name)

        async def build() -> None:
            await self._admin(f"create database {_quoted(name)}")
            connection = await asyncpg.connect(self.server.dsn_for(name))
            try:
                await migrate_all(connection, schema)
            finally:
                await connection.close()
            await self._admin(f"alter database {_quoted(name)} with is_template true allow_connections false")

        _blocking(build)
        self._templates[schema] = name
        return name

    async def _drop_template(self, name: str) -> None:
        await self._admin(f"alter database {_quoted(name)} is_template false")  # a template cannot be dropped
        await self._admin(f"drop database if exists {_quoted(name)} with (force)")

    async def _create_database(self, name: str, template: str) -> None:
        await self._admin(f"create database {_quoted(name)} template {_quoted(template)}")

    async def _admin(self, statement: str) -> None:
        # Database names cannot be parameters of DDL; every name here is one this module made up (hex digits).
        connection = await asyncpg.connect(self.server.admin_dsn)
        try:
            await connection.execute(statement)
        except asyncpg.InsufficientPrivilegeError as error:
            raise ConfigurationError(
                f"the test database server {self.server.redacted} refused to create or drop a database: "
                "its user needs the CREATEDB privilege (or give another server with --backfill-database-url)"
            ) from error
        finally:
            await connection.close()


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _blocking(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` to completion on a new event loop in a thread of its own, and return its result."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-testing") as thread:
        return thread.submit(lambda: asyncio.run(work())).result()
