"""SchemaName: the one piece of configuration spliced into SQL text is validated and quoted once."""

from __future__ import annotations

from typing import Any

import pytest

from backfill.core.errors import ConfigurationError
from backfill.core.schema import DEFAULT_SCHEMA, SCHEMA_ENV_VAR, SchemaName


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("graphile_worker", '"graphile_worker"'),
        ("MixedCase", '"MixedCase"'),  # quoting keeps the case PostgreSQL would otherwise fold
        ('My "odd" schema', '"My ""odd"" schema"'),
        ("with space; drop table x", '"with space; drop table x"'),
        ("é" * 31, '"' + "é" * 31 + '"'),  # 62 bytes: multi-byte names are measured in bytes
    ],
)
def test_quoted_form_is_a_safe_identifier(name: str, quoted: str) -> None:
    schema = SchemaName(name)
    assert schema.quoted == quoted
    assert schema.qualify("add_job") == f"{quoted}.add_job"
    assert str(schema) == name


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("", "empty"),
        ("a\x00b", "NUL"),
        ("x" * 64, "longer than 63 bytes"),
        ("é" * 32, "longer than 63 bytes"),  # 32 characters but 64 bytes
        ("pg_jobs", "reserved"),
        ("a$body$b", r"\$"),  # would end the $body$-quoted function bodies early
        ("price$", r"\$"),
    ],
)
def test_unusable_names_are_refused(name: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        SchemaName(name)


def test_longest_allowed_name() -> None:
    assert SchemaName("x" * 63).name == "x" * 63


@pytest.mark.parametrize("value", [123, None, b"graphile_worker"])
def test_non_string_names_are_a_configuration_error(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        SchemaName(value)


def test_from_env_prefers_argument_then_variable_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEMA_ENV_VAR, raising=False)
    assert SchemaName.from_env().name == DEFAULT_SCHEMA == "graphile_worker"
    monkeypatch.setenv(SCHEMA_ENV_VAR, "from_env")
    assert SchemaName.from_env().name == "from_env"
    assert SchemaName.from_env("explicit").name == "explicit"
    # An empty variable means "not set", as in a shell `VAR=` line.
    monkeypatch.setenv(SCHEMA_ENV_VAR, "")
    assert SchemaName.from_env().name == DEFAULT_SCHEMA


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEMA_ENV_VAR, "pg_nope")
    with pytest.raises(ConfigurationError, match=f"^{SCHEMA_ENV_VAR}: .*reserved"):
        SchemaName.from_env()


def test_coerce_accepts_instance_name_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEMA_ENV_VAR, raising=False)
    existing = SchemaName("kept")
    assert SchemaName.coerce(existing) is existing
    assert SchemaName.coerce("named") == SchemaName("named")
    assert SchemaName.coerce(None) == SchemaName(DEFAULT_SCHEMA)


def test_schema_name_is_immutable() -> None:
    schema = SchemaName("fixed")
    with pytest.raises(AttributeError):
        schema.name = "changed"  # type: ignore[misc]


def test_error_names_the_environment_variable_only_when_the_value_came_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAPHILE_WORKER_SCHEMA", "from$env")
    with pytest.raises(ConfigurationError, match=r"^GRAPHILE_WORKER_SCHEMA: "):
        SchemaName.from_env()
    with pytest.raises(ConfigurationError) as caught:
        SchemaName.from_env("given$name")
    assert "GRAPHILE_WORKER_SCHEMA" not in str(caught.value)
