"""Every named statement of backfill is used, and prepares against a real, fully migrated database.

The classes are found through ``Statements.registry`` once every module of ``backfill`` is imported. "Used"
is read from the source: an entry is used when some module of ``backfill`` reads it as an attribute of the
value that class's ``for_schema`` returned (directly, or through a name or attribute it was stored in), or,
for a part, when another entry includes it. Preparing (``connection.prepare``) makes the server parse, check
and plan a statement without running it, so a typo, a wrong column or a part that does not fit the statement
it is included in fails here, for a schema whose name needs quoting in both an identifier and a literal.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import backfill
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.migrations import migrate_all

SCHEMA = SchemaName('My "Odd" Schema\'s')
PACKAGE = Path(backfill.__file__).parent


def statement_classes() -> list[type[Statements]]:
    for module in pkgutil.walk_packages([str(PACKAGE)], "backfill."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    # Only backfill's own: a unit test's classes are not part of the package.
    return [cls for cls in Statements.registry if cls.__module__.startswith("backfill.")]


CLASSES = statement_classes()
BY_NAME = {cls.__name__: cls for cls in CLASSES}


def attributes_read() -> set[tuple[type[Statements], str]]:
    """``(class, attribute)`` for every attribute read from a loaded set of statements in ``backfill/``."""
    read: set[tuple[type[Statements], str]] = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # What holds a class's statements in this module: the for_schema call itself, and whatever it is
        # assigned to (a local name, self._sql), by source text.
        holders: dict[str, type[Statements]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and (cls := loaded_class(node.value)) is not None:
                holders.update((ast.unparse(target), cls) for target in node.targets)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                cls = loaded_class(node.value) or holders.get(ast.unparse(node.value))
                if cls is not None:
                    read.add((cls, node.attr))
    return read


def loaded_class(node: ast.expr) -> type[Statements] | None:
    """The class when ``node`` is ``SomeSql.for_schema(...)`` for one of backfill's statement classes."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "for_schema"
        and isinstance(node.func.value, ast.Name)
    ):
        return BY_NAME.get(node.func.value.id)
    return None


def test_the_statement_classes_are_found() -> None:
    # A guard for the tests below: an import failure or a moved registry must not make them pass vacuously.
    assert len(CLASSES) >= 10
    assert len(BY_NAME) == len(CLASSES), "two statement classes share a name: the source scan cannot tell them apart"


def test_every_entry_is_used() -> None:
    used = attributes_read() | {part for cls in CLASSES for parts in cls.included_parts().values() for part in parts}
    unused = [f"{cls.__name__}.{name}" for cls in CLASSES for name in cls.entry_names() if (cls, name) not in used]
    assert unused == [], "entries no module reads and no entry includes"


@pytest.fixture
async def migrated(empty_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection to a database with every migration line installed in SCHEMA: core, dlq and tasks."""
    connection = await asyncpg.connect(empty_database_url)
    try:
        await migrate_all(connection, SCHEMA, dlq=True)
        yield connection
    finally:
        await connection.close()


async def test_every_named_statement_prepares(migrated: asyncpg.Connection[Any]) -> None:
    failures = {}
    for cls in CLASSES:
        kinds = cls.kinds()
        for name, text in cls.for_schema(SCHEMA):
            if kinds[name] == "name":
                try:
                    await migrated.prepare(text)
                except asyncpg.PostgresError as error:
                    failures[f"{cls.__name__}.{name}"] = f"{type(error).__name__}: {error}"
    assert failures == {}


async def test_every_part_prepares_inside_the_statements_that_include_it(migrated: asyncpg.Connection[Any]) -> None:
    # Which statements include each part, directly or through another part (of any file).
    includes = {(cls, name): parts for cls in CLASSES for name, parts in cls.included_parts().items()}
    statements = [entry for entry in includes if entry[0].kinds()[entry[1]] == "name"]
    parts = [entry for entry in includes if entry[0].kinds()[entry[1]] == "part"]
    assert parts, "no parts found"

    def reaches(entry: tuple[type[Statements], str], part: tuple[type[Statements], str]) -> bool:
        return part in includes[entry] or any(reaches(inner, part) for inner in includes[entry])

    for part in parts:
        users = [(cls, name) for cls, name in statements if reaches((cls, name), part)]
        assert users, f"no statement includes the part {part[0].__name__}.{part[1]}"
        for cls, name in users:
            text = getattr(cls.for_schema(SCHEMA), name)
            assert getattr(part[0].for_schema(SCHEMA), part[1]) in text
            await migrated.prepare(text)
