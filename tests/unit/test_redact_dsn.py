"""redact_dsn: connection strings can be logged without their passwords."""

from __future__ import annotations

import pytest

from backfill.core.db import redact_dsn


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("postgresql://app:s3cret@db.example:5432/jobs", "postgresql://app:***@db.example:5432/jobs"),
        ("postgres://app:s3cret@db/jobs?sslmode=require", "postgres://app:***@db/jobs?sslmode=require"),
        # An unescaped '@' in the password: the host is what follows the last '@'.
        ("postgresql://app:p@ss@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:s3cret@[::1]:5432/jobs", "postgresql://app:***@[::1]:5432/jobs"),
        ("postgresql://app:@db/jobs", "postgresql://app:***@db/jobs"),
    ],
)
def test_password_is_replaced(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app@db/jobs",
        "postgresql://db/jobs",
        "postgresql:///jobs?host=/var/run/postgresql",
    ],
)
def test_dsn_without_password_is_unchanged(dsn: str) -> None:
    assert redact_dsn(dsn) == dsn


def test_unparsable_dsn_is_not_echoed() -> None:
    redacted = redact_dsn("postgresql://app:s3cret@[::1:5432/jobs")
    assert "s3cret" not in redacted
    assert redacted == "<unparsable database URL>"


def test_password_in_query_string_is_replaced() -> None:
    redacted = redact_dsn("postgresql://app@db/jobs?sslmode=require&password=s3cret")
    assert redacted == "postgresql://app@db/jobs?sslmode=require&password=***"


@pytest.mark.parametrize(
    "dsn",
    ["host=db user=app password=s3cret dbname=jobs", "host=db password = 's3 cret' dbname=jobs"],
)
def test_password_in_keyword_value_string_is_replaced(dsn: str) -> None:
    redacted = redact_dsn(dsn)
    assert "s3" not in redacted and "cret" not in redacted
    assert redacted.startswith("host=db ") and redacted.endswith(" dbname=jobs")
