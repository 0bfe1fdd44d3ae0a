"""SQL files of the core, loaded with the schema name spliced in once."""

from __future__ import annotations

from functools import cache
from importlib import resources

from backfill.core.schema import SchemaName

SCHEMA_PLACEHOLDER = "@schema@"


@cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def load(name: str, schema: SchemaName) -> str:
    """The text of ``name`` (e.g. ``"install.sql"``) with every ``@schema@`` replaced by the quoted schema."""
    return _read(name).replace(SCHEMA_PLACEHOLDER, schema.quoted)
