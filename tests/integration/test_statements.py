"""Every named statement of backfill is used, and prepares against a real, fully migrated database.

The classes come from ``Statements.registry`` once every backfill module is imported, so a new statement file
is checked without being listed here. Preparing a statement makes PostgreSQL parse, analyse and plan it: a typo,
a wrong column, a missing cast or a part that does not fit where it is included fails here, not in production.
"""

from __future__ import annotations

import ast
import functools
import importlib
import pkgutil
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import backfill
from backfill.core.schema import SchemaName
from backfill.core.statements import Statements
from backfill.migrations import migrate_all

# A name that needs quoting every way it can: statements must use the quoted form, never the bare name.
ODD_SCHEMA = SchemaName('My "Odd" Schema')
PACKAGE_ROOT = Path(backfill.__file__).parent


def _import_every_module() -> None:
    for module in pkgutil.walk_packages([str(PACKAGE_ROOT)], prefix="backfill."):
        if module.name != "backfill.__main__":  # runs the command line
            importlib.import_module(module.name)


def statement_classes() -> list[type[Statements]]:
    _import_every_module()
    return [cls for cls in Statements.registry if cls.__module__.startswith("backfill.")]


def _entries(kind: str) -> Iterator[tuple[type[Statements], str]]:
    for cls in statement_classes():
        for name, entry_kind in cls.kinds().items():
            if entry_kind == kind:
                yield cls, name


def _attribute_uses() -> dict[Path, set[str]]:
    """Per module of backfill, the names it reads as an attribute of something other than ``self`` or ``cls``
    (``sql.add_job``, ``self._sql.beat``: not ``self.register()``, a method that shares an entry's name)."""
    uses: dict[Path, set[str]] = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and not (
                isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"}
            ):
                names.add(node.attr)
        uses[path] = names
    return uses


def _mentions(path: Path, class_name: str) -> bool:
    return class_name in _names_in(path)


@functools.cache
def _names_in(path: Path) -> frozenset[str]:
    """The names a module uses, parsed once: asked per statement class, parsing each time took 10 s a run."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name))


def test_every_entry_is_used() -> None:
    """An entry is used when a module that names its class reads it as an attribute, or (a part) when a
    statement includes it: an entry nobody runs is dead SQL that nobody would notice going stale."""
    classes = statement_classes()
    assert classes, "no statement classes found"
    included = {included for cls in classes for included in cls.included_parts()}
    uses = _attribute_uses()
    unused = []
    for cls in classes:
        readers = [path for path, names in uses.items() if _mentions(path, cls.__name__)]
        for name in cls.entry_names():
            read = any(name in uses[path] for path in readers)
            if not read and (cls, name) not in included:
                unused.append(f"{cls.__name__}.{name}")
    assert unused == []


def test_every_part_is_included_by_a_statement() -> None:
    """A part only reaches the database inside a statement: each must be included by a ``name:`` entry (directly
    or through another part), which the test below prepares. Parts that Python composes have none here."""
    includers: dict[tuple[type[Statements], str], set[type[Statements]]] = {}
    for cls in statement_classes():
        for owner, part in cls.included_parts():
            includers.setdefault((owner, part), set()).add(cls)
    orphans = []
    for cls, part in _entries("part"):
        if (cls, part) not in includers:
            orphans.append(f"{cls.__name__}.{part}")
            continue
        # Some complete statement of a file that includes it holds the part's text, renumbered or not.
        texts = [text for including in includers[(cls, part)] for _, text in _named(including)]
        body = getattr(cls.for_schema(ODD_SCHEMA), part)
        if not any(_same_but_numbers(body, text) for text in texts):
            orphans.append(f"{cls.__name__}.{part} (in no complete statement)")
    assert orphans == []


def _named(cls: type[Statements]) -> Iterator[tuple[str, str]]:
    loaded = cls.for_schema(ODD_SCHEMA)
    for name, kind in cls.kinds().items():
        if kind == "name":
            yield name, getattr(loaded, name)


def _same_but_numbers(part: str, statement: str) -> bool:
    """Whether ``statement`` holds ``part``, allowing its parameters to be renumbered (``@part:x($2=$6)@``)."""
    pattern = re.sub(r"\\\$\d+", lambda _: r"\$\d+", re.escape(part))
    return re.search(pattern, statement) is not None


@pytest.fixture
async def migrated(empty_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A database with every migration line (core, dead-letter queue, task catalog) in the odd schema."""
    connection = await asyncpg.connect(empty_database_url)
    await migrate_all(connection, ODD_SCHEMA)
    try:
        yield connection
    finally:
        await connection.close()


async def test_every_statement_prepares(migrated: asyncpg.Connection[Any]) -> None:
    failures = []
    count = 0
    for cls, name in _entries("name"):
        text = getattr(cls.for_schema(ODD_SCHEMA), name)
        try:
            await migrated.prepare(text)
        except asyncpg.PostgresError as error:
            failures.append(f"{cls.__name__}.{name}: {error}")
        count += 1
    assert failures == []
    assert count > 50  # every file was found
