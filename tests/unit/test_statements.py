"""The statement loader on its own: files written into a throwaway package, no database."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import cast

import pytest

from backfill.core.schema import SchemaName
from backfill.core.statements import StatementFileError, Statements

ODD = SchemaName('My "Odd" Schema')
PLAIN = SchemaName("graphile_worker")
_packages = itertools.count()

WriteFile = Callable[[str], tuple[str, str]]


@pytest.fixture
def sql_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteFile]:
    """Writes a statement file into a new package and returns its ``file=`` tuple; the classes a test declares
    leave the registry afterwards, so that the integration test of every statement never sees them."""
    monkeypatch.syspath_prepend(str(tmp_path))
    registered = list(Statements.registry)

    def write(text: str) -> tuple[str, str]:
        package = f"statement_test_package_{next(_packages)}"
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / "queries.sql").write_text(text, encoding="utf-8")
        return package, "queries.sql"

    yield write
    Statements.registry[:] = registered
    for name in [name for name in sys.modules if name.startswith("statement_test_package_")]:
        del sys.modules[name]


def test_headers_open_entries_and_comments_stay_in_the_file(sql_file: WriteFile) -> None:
    file = sql_file(
        """-- What the file is about: not part of any entry.

-- name: first
-- Why the statement is written so: kept here, not sent.
select 1 -- a comment at the end of a line is part of the statement
   from pg_class

-- part: piece
and true
"""
    )

    class Sql(Statements, file=file):
        first: str
        piece: str

    sql = Sql.for_schema(PLAIN)
    assert sql.first == "select 1 -- a comment at the end of a line is part of the statement\n   from pg_class"
    assert sql.piece == "and true"
    assert Sql.kinds() == {"first": "name", "piece": "part"}
    assert list(sql) == [("first", sql.first), ("piece", sql.piece)]
    assert Sql.entry_names() == ("first", "piece")


def test_placeholders_become_the_quoted_schema_and_literals(sql_file: WriteFile) -> None:
    file = sql_file(
        """-- name: everything
select * from @schema@.jobs where name = @schema_name@ and flag = @flag@ and n > @low@ limit @batch@
"""
    )

    class Sql(Statements, file=file):
        literals = MappingProxyType({"flag": "it's:a=flag", "low": -1, "batch": 500})
        everything: str

    assert Sql.for_schema(ODD).everything == (
        """select * from "My ""Odd"" Schema".jobs where name = 'My "Odd" Schema' and flag = 'it''s:a=flag' """
        "and n > (-1) limit 500"
    )


def test_a_literal_must_be_a_string_or_an_integer(sql_file: WriteFile) -> None:
    file = sql_file("-- name: one\nselect @flag@\n")

    class Sql(Statements, file=file):
        literals = MappingProxyType({"flag": True})
        one: str

    with pytest.raises(StatementFileError, match="a str or an int, not bool"):
        Sql.for_schema(PLAIN)


def test_a_placeholder_without_a_value_fails_the_load(sql_file: WriteFile) -> None:
    file = sql_file("-- name: one\nselect @missing@\n")

    class Sql(Statements, file=file):
        one: str

    with pytest.raises(StatementFileError, match="no value for @missing@"):
        Sql.for_schema(PLAIN)


def test_file_and_class_must_declare_the_same_entries(sql_file: WriteFile) -> None:
    file = sql_file("-- name: in_file\nselect 1\n")

    class Sql(Statements, file=file):
        in_class: str

    with pytest.raises(StatementFileError, match=r"no entry for \['in_class'\], no attribute for \['in_file'\]"):
        Sql.for_schema(PLAIN)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: twice\nselect 1\n-- name: twice\nselect 2\n", "defined twice"),
        ("-- name: empty\n-- only a comment\n\n-- name: other\nselect 1\n", "'empty' is empty"),
    ],
)
def test_a_malformed_file_fails_the_load(sql_file: WriteFile, text: str, message: str) -> None:
    file = sql_file(text)

    class Sql(Statements, file=file):
        twice: str
        empty: str
        other: str

    with pytest.raises(StatementFileError, match=message):
        Sql.for_schema(PLAIN)


def test_loaded_once_per_schema(sql_file: WriteFile) -> None:
    file = sql_file("-- name: one\nselect * from @schema@.jobs\n")

    class Sql(Statements, file=file):
        one: str

    plain = Sql.for_schema(PLAIN)
    assert Sql.for_schema(SchemaName("graphile_worker")) is plain
    odd = Sql.for_schema(ODD)
    assert odd is not plain
    assert (plain.one, odd.one) == ('select * from "graphile_worker".jobs', 'select * from "My ""Odd"" Schema".jobs')


def test_a_statement_includes_parts_of_its_file_and_of_the_classes_it_includes(sql_file: WriteFile) -> None:
    shared = sql_file("-- part: columns\nj.id, @kind@ as kind\n")

    class Shared(Statements, file=shared):
        literals = MappingProxyType({"kind": "payload"})
        columns: str

    file = sql_file(
        """-- name: listing
select @part:columns@ from @schema@.jobs as j where @part:visible@

-- part: visible
j.id > 0 and @part:columns_known@

-- part: columns_known
true
"""
    )

    class Sql(Statements, file=file):
        includes = (Shared,)
        listing: str
        visible: str
        columns_known: str

    sql = Sql.for_schema(PLAIN)
    # The included part keeps its own file's values (kind is Shared's literal, not Sql's).
    assert sql.listing == """select j.id, 'payload' as kind from "graphile_worker".jobs as j where j.id > 0 and true"""
    assert Sql.included_parts() == {(Shared, "columns"), (Sql, "visible"), (Sql, "columns_known")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: one\nselect @part:nowhere@\n", "no part named 'nowhere'"),
        ("-- name: one\nselect @part:loop@\n-- part: loop\nand @part:loop@\n", "'loop' includes itself"),
        ("-- name: one\nselect 1\n-- name: two\nselect @part:one@\n", "no part named 'one'"),  # not a part
    ],
)
def test_an_include_must_name_a_part(sql_file: WriteFile, text: str, message: str) -> None:
    file = sql_file(text)
    entries = {name: "str" for name in ("one", "two", "loop") if f": {name}\n" in text}
    sql = cast(type[Statements], type("Sql", (Statements,), {"__annotations__": entries}, file=file))
    with pytest.raises(StatementFileError, match=message):
        sql.for_schema(PLAIN)


def test_an_include_may_renumber_the_parameters_of_its_part(sql_file: WriteFile) -> None:
    file = sql_file(
        """-- name: as_written
select @part:fence@
-- name: renumbered
select @part:fence($2=$6)@
-- name: swapped
select @part:fence($1=$2, $2=$1)@
-- part: fence
id = $1::bigint and locked_by = $2::text and n = $12::int
"""
    )

    class Sql(Statements, file=file):
        as_written: str
        renumbered: str
        swapped: str
        fence: str

    sql = Sql.for_schema(PLAIN)
    assert sql.as_written == "select id = $1::bigint and locked_by = $2::text and n = $12::int"
    assert sql.renumbered == "select id = $1::bigint and locked_by = $6::text and n = $12::int"
    assert sql.swapped == "select id = $2::bigint and locked_by = $1::text and n = $12::int"
    assert sql.fence == "id = $1::bigint and locked_by = $2::text and n = $12::int"
    assert Sql.included_parts() == {(Sql, "fence")}
