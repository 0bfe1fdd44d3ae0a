"""Named SQL statements kept in ``.sql`` files, loaded once per schema.

SQL lives in ``.sql`` files, grouped by operation, and Python refers to it by name. A file holds any number of
entries, each opened by a header line:

* ``-- name: <name>`` a complete statement, run as it is (and prepared by the test that checks every one);
* ``-- part: <name>`` a piece that Python composes into a statement (the optional clauses of a fetch filter).

The lines up to the next header belong to the entry; comment lines before the first header describe the file.
Whole-line comments (``--`` first on the line) stay in the file, next to the SQL they explain, and are not
sent: placeholders in them are not filled, and the server gets only the statement.
In the text, ``@schema@`` becomes the quoted schema name, ``@schema_name@`` the name as a string literal (for
catalog look-ups such as ``to_regclass``), and ``@<constant>@`` a literal from the class's
``literals`` (a flag prefix as a string literal, say, or a batch size as an integer), so that a value Python
and SQL share is written once, in Python.

An entry may include a part with ``@part:<name>@``: the part's text (its own placeholders filled) is spliced
in at load time, so a fragment that several statements share (an expression, a filter) is written once and
every statement that uses it is still complete, and prepared as it is, when loaded. The part is this file's,
or one of the files of the classes named in ``includes`` (a layer file reusing a core expression, say).
``@part:<name>($2=$6)@`` includes it with its parameter ``$2`` written ``$6``: a fragment fenced by a parameter
(a worker id) serves statements that number that parameter differently.

A class of statements names its file and declares one ``str`` attribute per entry::

    class HeartbeatSql(Statements, file=("backfill.core.sql", "heartbeat.sql")):
        register: str
        beat: str

    sql = HeartbeatSql.for_schema(schema)   # loaded and checked once per schema, then cached

Loading fails loudly when the file and the class disagree (an entry without an attribute or the reverse), or
when a placeholder or an included part has no value, so a typo cannot reach the database as a half-built
statement.
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
# @part:<name>@, or @part:<name>($2=$6, ...)@ to include it with its parameters renumbered.
_PART_REFERENCE = re.compile(r"@part:([a-z_][a-z0-9_]*)(?:\(((?:\$\d+=\$\d+)(?:,\s*\$\d+=\$\d+)*)\))?@")
_PARAMETER = re.compile(r"\$(\d+)(?!\d)")
_PARAMETER_PAIR = re.compile(r"\$(\d+)=\$(\d+)")
SCHEMA_PLACEHOLDER = "schema"
SCHEMA_NAME_PLACEHOLDER = "schema_name"


class StatementFileError(Exception):
    """A statement file that does not match its class (a programming error, found at first load)."""


class Statements:
    """Base of a typed set of named statements (see the module docstring)."""

    file: ClassVar[tuple[str, str]]
    literals: ClassVar[Mapping[str, str | int]] = MappingProxyType({})
    # Other classes whose parts this file's entries may include with @part:<name>@.
    includes: ClassVar[tuple[type[Statements], ...]] = ()
    # Parts still kept as Python constants elsewhere, by name (a bridge: see the module docstring).
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

    @classmethod
    def included_parts(cls) -> set[tuple[type[Statements], str]]:
        """The parts this file's entries include, as ``(class that owns the part, part name)``."""
        return {
            (_owner_of_part(cls, part), part)
            for _, body in _entries(cls.file).values()
            for part, _ in _PART_REFERENCE.findall(body)
        }

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
        elif current is not None and not line.lstrip().startswith("--"):
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
    values = {name: _literal(cls, name, value) for name, value in cls.literals.items()}
    values[SCHEMA_PLACEHOLDER] = schema.quoted
    values[SCHEMA_NAME_PLACEHOLDER] = _literal(cls, SCHEMA_NAME_PLACEHOLDER, schema.name)

    def splice(match: re.Match[str]) -> str:
        try:
            return values[match.group(1)]
        except KeyError:
            raise StatementFileError(f"{cls.file[1]}: no value for @{match.group(1)}@") from None

    spliced = {name: _PLACEHOLDER.sub(splice, body) for name, (_, body) in entries.items()}

    def include(text: str, within: tuple[str, ...]) -> str:
        def one(match: re.Match[str]) -> str:
            part = match.group(1)
            if part in within:
                raise StatementFileError(f"{cls.file[1]}: part {part!r} includes itself")
            owner = _owner_of_part(cls, part)
            if owner is cls:
                return include(spliced[part], (*within, part))
            text: str = getattr(owner.for_schema(schema), part)  # already complete: its own file's values
            return text

        def renumbered(match: re.Match[str]) -> str:
            text = one(match)
            if match.group(2) is None:
                return text
            numbers: dict[str, str] = dict(_PARAMETER_PAIR.findall(match.group(2)))
            # All at once, in one pass: ($2=$6, $6=$2) swaps the two.
            return _PARAMETER.sub(lambda mark: "$" + numbers.get(mark.group(1), mark.group(1)), text)

        return _PART_REFERENCE.sub(renumbered, text)

    instance = cls.__new__(cls)
    for name, text in spliced.items():
        setattr(instance, name, include(text, (name,)))
    return instance


def _owner_of_part(cls: type[Statements], part: str) -> type[Statements]:
    """The class whose file holds the part ``part`` that ``cls``'s file includes (its own, or one it includes);
    exactly one of them must have it."""
    owners = [owner for owner in (cls, *cls.includes) if _entries(owner.file).get(part, ("", ""))[0] == "part"]
    if len(owners) != 1:
        where = "no part" if not owners else "more than one part"
        raise StatementFileError(f"{cls.file[1]}: {where} named {part!r} for @part:{part}@")
    return owners[0]


def _literal(cls: type[Statements], name: str, value: object) -> str:
    """``value`` as SQL: a string quoted, an integer as digits (bool refused: it is an int by accident)."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value >= 0 else f"({value})"  # in parentheses: no "- -1" after a minus
    raise StatementFileError(f"{cls.__name__}.literals[{name!r}]: a str or an int, not {type(value).__name__}")
