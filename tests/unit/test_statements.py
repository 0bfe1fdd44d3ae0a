"""The statement loader: headers, parts, placeholders, a file that disagrees with its class, caching per schema.

Each test writes its .sql files into a package of its own under tmp_path, and defines its classes against a
registry of its own, so nothing here reaches the registry the integration test walks.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from backfill.core.schema import SchemaName
from backfill.core.statements import StatementFileError, Statements

SCHEMA = SchemaName("graphile_worker")
ODD = SchemaName('My "Odd" Schema\'s')
_packages = itertools.count()

SqlFile = Callable[[str], tuple[str, str]]


@pytest.fixture
def sql_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqlFile]:
    """Writes a .sql file into a fresh package and returns its ``(package, file name)``."""
    package = f"statements_test_{next(_packages)}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(Statements, "registry", [])
    files = itertools.count()

    def write(text: str) -> tuple[str, str]:
        name = f"file_{next(files)}.sql"
        (tmp_path / package / name).write_text(text, encoding="utf-8")
        return (package, name)

    yield write
    sys.modules.pop(package, None)


def test_entries_are_named_by_their_headers_and_comment_lines_are_not_sent(sql_file: SqlFile) -> None:
    class Sql(
        Statements,
        file=sql_file(
            "-- What this file holds: @not_a_placeholder@.\n\n"
            "-- name: first\n"
            "-- why it is written so: @nor_this@\n"
            "select 1\n"
            "  from t  -- a trailing comment is sent\n\n"
            "--part:   second  \n"
            "x = 1\n"
        ),
    ):
        first: str
        second: str

    sql = Sql.for_schema(SCHEMA)
    assert sql.first == "select 1\n  from t  -- a trailing comment is sent"
    assert sql.second == "x = 1"
    assert Sql.kinds() == {"first": "name", "second": "part"}
    assert list(sql) == [("first", sql.first), ("second", sql.second)]
    assert Statements.registry == [Sql]


def test_schema_and_literals_are_spliced_quoted(sql_file: SqlFile) -> None:
    class Sql(
        Statements,
        file=sql_file(
            "-- name: statement\n"
            "select @prefix@, @size@, @below@ from @schema@.jobs where to_regclass(@schema_name@) is null\n"
        ),
    ):
        literals = MappingProxyType({"prefix": "it's:", "size": 500, "below": -1})
        statement: str

    assert Sql.for_schema(ODD).statement == (
        'select \'it\'\'s:\', 500, (-1) from "My ""Odd"" Schema\'s".jobs'
        " where to_regclass('My \"Odd\" Schema''s') is null"
    )


def test_a_value_spliced_in_is_not_read_again_for_placeholders(sql_file: SqlFile) -> None:
    class Sql(Statements, file=sql_file("-- name: statement\nselect @a@, @b@\n")):
        literals = MappingProxyType({"a": "@b@", "b": "@part:x@"})
        statement: str

    assert Sql.for_schema(SCHEMA).statement == "select '@b@', '@part:x@'"


def test_a_part_is_included_with_its_placeholders_filled_and_parts_nest(sql_file: SqlFile) -> None:
    class Sql(
        Statements,
        file=sql_file(
            "-- part: flag_test\n"
            "flags ? @flag@\n"
            "-- part: filter\n"
            "@part:flag_test@ and @schema@.ok(j)\n"
            "-- name: statement\n"
            "select 1 from j where @part:filter@\n"
        ),
    ):
        literals = MappingProxyType({"flag": "lane"})
        flag_test: str
        filter: str
        statement: str

    sql = Sql.for_schema(SCHEMA)
    assert sql.statement == "select 1 from j where flags ? 'lane' and \"graphile_worker\".ok(j)"
    assert sql.filter == "flags ? 'lane' and \"graphile_worker\".ok(j)"
    assert Sql.included_parts() == {"flag_test": set(), "filter": {(Sql, "flag_test")}, "statement": {(Sql, "filter")}}


def test_a_part_of_another_file_is_included_with_that_files_literals(sql_file: SqlFile) -> None:
    class Lane(Statements, file=sql_file("-- part: lane\ncase when flags ? @flag@ then 'custom' end\n")):
        literals = MappingProxyType({"flag": "backfill:lane"})
        lane: str

    class Figures(Statements, file=sql_file("-- name: by_lane\nselect @part:lane@, @flag@ from @schema@.jobs\n")):
        includes = (Lane,)
        literals = MappingProxyType({"flag": "other"})
        by_lane: str

    assert Figures.for_schema(SCHEMA).by_lane == (
        "select case when flags ? 'backfill:lane' then 'custom' end, 'other' from \"graphile_worker\".jobs"
    )
    assert Figures.included_parts() == {"by_lane": {(Lane, "lane")}}


def test_a_python_part_is_spliced_as_it_is(sql_file: SqlFile) -> None:
    class Sql(Statements, file=sql_file("-- name: statement\nselect @part:state@ from @schema@.jobs\n")):
        python_parts = MappingProxyType({"state": "case when x then 'a' end"})
        statement: str

    assert Sql.for_schema(SCHEMA).statement == "select case when x then 'a' end from \"graphile_worker\".jobs"
    assert Sql.included_parts() == {"statement": set()}


@pytest.mark.parametrize(
    ("text", "entries", "complaint"),
    [
        ("-- name: statement\nselect @part:nowhere@\n", ["statement"], "no part named 'nowhere'"),
        ("-- name: statement\nselect @part:statement@\n", ["statement"], "no part named 'statement'"),  # a name
        ("-- part: loop\n@part:loop@\n-- name: statement\nselect @part:loop@\n", ["loop", "statement"], "itself"),
        ("-- name: statement\nselect @missing@\n", ["statement"], "no value for @missing@"),
    ],
)
def test_a_reference_without_a_value_fails_at_load(
    sql_file: SqlFile, text: str, entries: list[str], complaint: str
) -> None:
    # A class per case, with one attribute per entry of the case's file.
    sql: type[Statements] = type(
        "Sql", (Statements,), {"__annotations__": dict.fromkeys(entries, "str")}, file=sql_file(text)
    )

    with pytest.raises(StatementFileError, match=complaint):
        sql.for_schema(SCHEMA)


def test_a_part_found_in_two_places_is_refused(sql_file: SqlFile) -> None:
    class Other(Statements, file=sql_file("-- part: shared\n1\n")):
        shared: str

    class Sql(Statements, file=sql_file("-- part: shared\n2\n-- name: statement\nselect @part:shared@\n")):
        includes = (Other,)
        shared: str
        statement: str

    with pytest.raises(StatementFileError, match="more than one part named 'shared'"):
        Sql.for_schema(SCHEMA)


def test_a_literal_of_another_type_is_refused(sql_file: SqlFile) -> None:
    class Sql(Statements, file=sql_file("-- name: statement\nselect @on@\n")):
        literals = MappingProxyType({"on": True})
        statement: str

    with pytest.raises(StatementFileError, match=r"Sql.literals\['on'\]: a str or an int, not bool"):
        Sql.for_schema(SCHEMA)


def test_a_file_and_a_class_that_disagree_fail_at_load(sql_file: SqlFile) -> None:
    class Sql(Statements, file=sql_file("-- name: in_file\nselect 1\n-- name: both\nselect 2\n")):
        both: str
        in_class: str

    with pytest.raises(StatementFileError, match=r"no entry for \['in_class'\], no attribute for \['in_file'\]"):
        Sql.for_schema(SCHEMA)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("-- name: twice\nselect 1\n-- part: twice\nx\n", "entry 'twice' is defined twice"),
        ("-- name: empty\n-- only a comment\n\n-- name: next\nselect 1\n", "entry 'empty' is empty"),
    ],
)
def test_a_malformed_file_fails_at_load(sql_file: SqlFile, text: str, complaint: str) -> None:
    class Sql(Statements, file=sql_file(text)):
        twice: str
        empty: str
        next: str

    with pytest.raises(StatementFileError, match=complaint):
        Sql.for_schema(SCHEMA)


def test_statements_are_loaded_once_per_schema(sql_file: SqlFile) -> None:
    class Sql(Statements, file=sql_file("-- name: statement\nselect 1 from @schema@.jobs\n")):
        statement: str

    default = Sql.for_schema(SCHEMA)
    assert Sql.for_schema(SchemaName("graphile_worker")) is default  # an equal name shares the instance
    odd = Sql.for_schema(ODD)
    assert odd is not default
    assert odd.statement == 'select 1 from "My ""Odd"" Schema\'s".jobs'
    assert default.statement == 'select 1 from "graphile_worker".jobs'
