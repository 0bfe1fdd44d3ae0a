"""The template databases of the test sessions: a session drops what a dead session left, never a live one's.

Several suites share one server on a developer's machine, so a wrong drop here would break another run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import sql

from backfill.core.migrations.graphile import LATEST_REVISION, current_revision
from backfill.core.schema import SchemaName
from tests.support.postgres import PostgresServer, new_database
from tests.support.templates import PREFIX, TemplateDatabases


@pytest.fixture
def admin(postgres_server: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as connection:
        yield connection


def _fake_template(admin: psycopg.Connection[Any]) -> tuple[str, str]:
    """A template as a session names it, (its name, its owner's marker), created as no session's."""
    owner = PREFIX + uuid.uuid4().hex[:12]
    name = f"{owner}_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("create database {} is_template true allow_connections false").format(sql.Identifier(name)))
    return name, owner


def _exists(admin: psycopg.Connection[Any], name: str) -> bool:
    row = admin.execute("select exists (select from pg_catalog.pg_database where datname = %s)", [name]).fetchone()
    return row is not None and bool(row[0])


def test_a_dead_sessions_template_is_dropped_and_a_live_sessions_kept(
    postgres_server: PostgresServer, admin: psycopg.Connection[Any]
) -> None:
    dead, _ = _fake_template(admin)
    live, owner = _fake_template(admin)
    foreign = f"{PREFIX}not_ours_{uuid.uuid4().hex[:6]}"
    admin.execute(sql.SQL("create database {}").format(sql.Identifier(foreign)))
    try:
        with (
            psycopg.connect(postgres_server.admin_dsn, application_name=owner),
            TemplateDatabases.opened(postgres_server),
        ):
            assert not _exists(admin, dead)
            assert _exists(admin, live)
            assert _exists(admin, foreign)
    finally:
        for name in (dead, live, foreign):
            if _exists(admin, name):
                admin.execute(sql.SQL("alter database {} is_template false").format(sql.Identifier(name)))
                admin.execute(sql.SQL("drop database {}").format(sql.Identifier(name)))


async def test_a_sessions_template_holds_the_schema_refuses_connections_and_goes_with_the_session(
    postgres_server: PostgresServer, admin: psycopg.Connection[Any]
) -> None:
    with TemplateDatabases.opened(postgres_server) as templates:
        name = await templates.template_for(SchemaName("bf_templated"))
        row = admin.execute("select datistemplate, datallowconn from pg_catalog.pg_database where datname = %s", [name])
        assert row.fetchone() == (True, False)
        async with new_database(postgres_server, template=name) as url:
            connection = await asyncpg.connect(url)
            try:
                assert await current_revision(connection, SchemaName("bf_templated")) == LATEST_REVISION
            finally:
                await connection.close()
    assert not _exists(admin, name)
