"""redact_dsn: connection strings can be logged without their passwords."""

from __future__ import annotations

import pytest

from backfill.core.db import redact_dsn
from backfill.core.errors import ConfigurationError
from backfill.core.secrets import check_dsn, remember_dsn, scrub


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


def test_unparsable_dsn_is_shown_with_its_password_masked() -> None:
    # Redaction no longer parses the URL, so a URL no parser accepts is still shown, host included.
    assert redact_dsn("postgresql://app:s3cret@[::1:5432/jobs") == "postgresql://app:***@[::1:5432/jobs"


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        # Unencoded specials in the password: the userinfo runs to the last '@', whatever it holds.
        ("postgresql://app:hunter2#sekrit@db:5432/jobs", "postgresql://app:***@db:5432/jobs"),
        ("postgresql://app:hunter2/sekrit@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:hunter2?sekrit@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:hunter2:sekrit@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:hunter2 sekrit@db/jobs", "postgresql://app:***@db/jobs"),
        ("postgresql://app:hunter2%23sekrit@db/jobs", "postgresql://app:***@db/jobs"),
        (
            "postgresql://app@db/jobs?password=hunter2%23sekrit&sslmode=require",
            "postgresql://app@db/jobs?password=***&sslmode=require",
        ),
    ],
)
def test_awkward_passwords_are_masked_whole(dsn: str, redacted: str) -> None:
    assert redact_dsn(dsn) == redacted


def test_scrub_masks_a_remembered_password_and_its_pieces() -> None:
    remember_dsn("postgresql://app:Wombat7#Quokka9@db/jobs")
    # What asyncpg quotes when the '#' cuts the URL short, and other shapes the password may take in a message.
    text = "invalid literal for int() with base 10: 'Wombat7'; fragment 'Quokka9@db/jobs'; Wombat7%23Quokka9"
    assert scrub(text) == "invalid literal for int() with base 10: '***'; fragment '***@db/jobs'; ***"


def test_scrub_masks_pgpassword(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "Platypus3/Echidna4")
    assert scrub("auth failed for Platypus3 and Echidna4") == "auth failed for *** and ***"


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("postgresql://app:hunter2#sekrit@db/jobs", "raw '#'"),
        ("postgresql://app:hunter2@sekrit@db/jobs", "more than one '@'"),
        ("postgresql://app:hunter2/sekrit@db/jobs", "port is not a number"),
        ("postgresql://app:hunter2?sekrit@db/jobs", "port is not a number"),
        ("host=db password=hunter2sekrit", "must be a postgres:// or postgresql:// URL"),
    ],
)
def test_unusable_dsns_are_refused_naming_the_source_and_not_the_password(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_dsn(dsn, "DATABASE_URL")
    message = str(caught.value)
    assert message.startswith("DATABASE_URL: ") and problem in message
    assert "hunter2" not in message and "sekrit" not in message


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:hunter2:sekrit@db:5432/jobs",
        "postgresql://app:hunter2%23sekrit@[::1]:5432/jobs",
        "postgres://db1:5432,db2:5433/jobs?target_session_attrs=read-write",
        "postgresql:///jobs?host=/var/run/postgresql",
    ],
)
def test_usable_dsns_pass_the_check(dsn: str) -> None:
    check_dsn(dsn, "DATABASE_URL")


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
