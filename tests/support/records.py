"""A stand-in for an asyncpg Record, for unit tests of row decoders that run without a database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Record:
    """What the decoders use of an asyncpg Record: values by column name, by position or by slice (a slice
    is a tuple, as asyncpg's is), ``keys()``, ``values()``, ``get()`` and iteration over the values."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._by_name = dict(values)
        self._in_order = tuple(self._by_name.values())

    def keys(self) -> Iterator[str]:
        return iter(self._by_name)

    def values(self) -> Iterator[Any]:
        return iter(self._in_order)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._in_order)

    def __len__(self) -> int:
        return len(self._in_order)

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            return self._by_name[key]
        return self._in_order[key]

    def get(self, name: str, default: Any = None) -> Any:
        return self._by_name.get(name, default)
