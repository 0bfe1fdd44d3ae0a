"""Named SQL statements kept in ``.sql`` files, loaded once per schema.

SQL lives in ``.sql`` files, grouped by operation, and Python refers to it by name. A file holds any number of
entries, each opened by a header line:

* ``-- name: <name>`` a complete statement, run as it is (and prepared by the test that checks every one);
* ``-- part: <name>`` a piece that Python composes into a statement (the optional clauses of a fetch filter).

The lines up to the next header belong to the entry; comment lines before the first header describe the file.
In the text, ``@schema@`` becomes the quoted schema name and ``@<constant>@`` a string literal from the class's
``literals`` (a flag prefix, say), so that a value Python and SQL share is written once, in Python.

A class of statements names its file and declares one ``str`` attribute per entry::

    class HeartbeatSql(Statements, file=("backfill.core.sql", "heartbeat.sql")):
        register: str
        beat: str

    sql = HeartbeatSql.for_schema(schema)   # loaded and checked once per schema, then cached

Loading fails loudly when the file and the class disagree (an entry without an attribute or the reverse), or
when a placeholder has no value, so a typo cannot reach the database as a half-built statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, ClassVar, Self

from backfill.core.schema import SchemaName

_HEADER = re.compile(r"^--\s*(name|part):\s*([a-z_][a-z0-9_]*)\s*$")
_PLACEHOLDER = re.compile(r"@([a-z_]+)@")
SCHEMA_PLACEHOLDER = "schema"


class StatementFileError(Exception):
    """A statement file that does not match its class (a programming error, found at first load)."""


class Statements:
    """Base of a typed set of named statements (see the module docstring)."""

    file: ClassVar[tuple[str, str]]
    literals: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # Every subclass, for the test that each entry is used and each statement prepares.
    registry: ClassVar[list[type[Statements]]] = []

    def __init_subclass__(cls, *, file: tuple[str, str], **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.file = file
        Statements.registry.append(cls)

    @classmethod
    def entry_names(cls) -> tuple[str, ...]:
        """The attributes this class declares: one per entry of its file."""
        return tuple(name for name, kind in cls.__annotations__.items() if "ClassVar" not in str(kind))

    @classmethod
    def for_schema(cls, schema: SchemaName) -> Self:
        """The statements with ``schema`` spliced in (cached: every worker of a schema shares one instance)."""
        key = (cls, schema)
        loaded = _loaded.get(key)
        if loaded is None:
            loaded = _loaded[key] = _load(cls, schema)
        assert isinstance(loaded, cls)
        return loaded

    @classmethod
    def kinds(cls) -> dict[str, str]:
        """Each entry's kind, ``"name"`` (a complete statement) or ``"part"``."""
        return {name: kind for name, (kind, _) in _entries(cls.file).items()}

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """``(entry name, text)`` pairs, in the order the class declares them."""
        for name in self.entry_names():
            yield name, getattr(self, name)


@cache
def _entries(file: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """The entries of one file: name -> (kind, text with placeholders)."""
    package, filename = file
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    entries: dict[str, tuple[str, str]] = {}
    current: tuple[str, str] | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            kind, name = current
            if name in entries:
                raise StatementFileError(f"{filename}: entry {name!r} is defined twice")
            body = "\n".join(lines).strip()
            if not body:
                raise StatementFileError(f"{filename}: entry {name!r} is empty")
            entries[name] = (kind, body)

    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            close()
            current = (header.group(1), header.group(2))
            lines = []
        elif current is not None:
            lines.append(line)
    close()
    return entries


_loaded: dict[tuple[type[Statements], SchemaName], Statements] = {}


def _load(cls: type[Statements], schema: SchemaName) -> Statements:
    entries = _entries(cls.file)
    declared = set(cls.entry_names())
    if set(entries) != declared:
        missing = sorted(declared - set(entries))
        extra = sorted(set(entries) - declared)
        raise StatementFileError(
            f"{cls.file[1]} and {cls.__name__} disagree: no entry for {missing}, no attribute for {extra}"
        )
    values = {name: _quote_literal(value) for name, value in cls.literals.items()}
    values[SCHEMA_PLACEHOLDER] = schema.quoted

    def splice(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise StatementFileError(f"{cls.file[1]}: no value for @{match.group(1)}@") from None

    instance = cls.__new__(cls)
    for name, (_, body) in entries.items():
        setattr(instance, name, _PLACEHOLDER.sub(splice, body))
    return instance


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
