"""Validating and quoting the Graphile schema name.

The schema name is the one piece of SQL text that comes from configuration, so it is checked and quoted
exactly once, here, and the quoted form is spliced into statements at start-up (never at call sites).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from backfill.core.errors import ConfigurationError

DEFAULT_SCHEMA = "graphile_worker"
SCHEMA_ENV_VAR = "GRAPHILE_WORKER_SCHEMA"

# PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; a silently truncated schema name
# would make two differently configured workers share one schema, so reject it instead.
_MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True, slots=True)
class SchemaName:
    """A validated schema name with its quoted SQL form."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigurationError(f"schema name must be a string, not {type(self.name).__name__}")
        if not self.name:
            raise ConfigurationError("schema name must not be empty")
        if "$" in self.name:
            # The quoted name is spliced into dollar-quoted function bodies ($body$ ... $body$): a name holding
            # a dollar tag would end the body early and turn the rest of the name into SQL.
            raise ConfigurationError(f"schema name {self.name!r} must not contain '$'")
        if "\x00" in self.name:
            raise ConfigurationError("schema name must not contain a NUL character")
        if len(self.name.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
            raise ConfigurationError(
                f"schema name {self.name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes; PostgreSQL would truncate it"
            )
        if self.name.startswith("pg_"):
            raise ConfigurationError(f"schema name {self.name!r} is reserved (names starting with pg_)")

    @property
    def quoted(self) -> str:
        """The name as a quoted SQL identifier, safe to splice into statement text."""
        return '"' + self.name.replace('"', '""') + '"'

    def qualify(self, object_name: str) -> str:
        """``"schema".object`` for an object name that is a fixed, trusted identifier."""
        return f"{self.quoted}.{object_name}"

    @classmethod
    def from_env(cls, value: str | None = None) -> SchemaName:
        """The schema given, else ``GRAPHILE_WORKER_SCHEMA``, else ``graphile_worker``."""
        if value is not None:
            return cls(value)
        try:
            return cls(os.environ.get(SCHEMA_ENV_VAR) or DEFAULT_SCHEMA)
        except ConfigurationError as error:
            # Name the variable only when the bad value came from it.
            raise ConfigurationError(f"{SCHEMA_ENV_VAR}: {error}") from None

    @classmethod
    def coerce(cls, value: str | SchemaName | None) -> SchemaName:
        """Accept a name, an already validated :class:`SchemaName`, or ``None`` for the environment default."""
        if isinstance(value, SchemaName):
            return value
        return cls.from_env(value)

    def __str__(self) -> str:
        return self.name
