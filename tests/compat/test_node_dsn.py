"""Node must reach the same server as asyncpg, whether the DSN names a TCP host or a unix socket."""

from __future__ import annotations

import pytest

from tests.compat.nodejs import node_connection_string

pytestmark = pytest.mark.compat


@pytest.mark.parametrize(
    ("dsn", "for_node"),
    [
        # the embedded server's form: empty host, socket directory in the query.
        ("postgresql://postgres:@/db?host=/tmp/pg%20x", "postgresql://postgres@%2Ftmp%2Fpg%20x/db"),
        ("postgresql://u:p%40ss@/db?host=/run/pg&port=5433", "postgresql://u:p%40ss@%2Frun%2Fpg:5433/db"),
        ("postgresql:///db?host=/tmp/s&sslmode=disable", "postgresql://%2Ftmp%2Fs/db?sslmode=disable"),
        # TCP DSNs pass through untouched.
        ("postgresql://postgres@127.0.0.1/postgres", "postgresql://postgres@127.0.0.1/postgres"),
        ("postgresql://u@db.example:6432/x?host=db.example", "postgresql://u@db.example:6432/x?host=db.example"),
    ],
)
def test_node_connection_string(dsn: str, for_node: str) -> None:
    assert node_connection_string(dsn) == for_node
