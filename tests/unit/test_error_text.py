"""error_text: what an exception becomes in the database, for any exception, without raising."""

from __future__ import annotations

import pytest

from backfill.core.error_text import (
    MAX_TRACEBACK_CHARS,
    ascii_text,
    error_message,
    exception_type,
    storable_text,
    traceback_text,
)
from backfill.core.errors import PayloadValidationError, PermanentFailure


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def raised(error: BaseException) -> BaseException:
    """``error`` with a traceback, as a handler's exception reaches the worker."""
    try:
        raise error
    except BaseException as caught:
        return caught


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\\x00b"),
        ("x\udcffy", "x\\udcffy"),
        ("価格 \x00 \ud800", "価格 \\x00 \\ud800"),
    ],
    ids=["plain", "nul", "lone-surrogate", "both-beside-valid-unicode"],
)
def test_storable_text_escapes_only_what_postgres_text_cannot_hold(text: str, stored: str) -> None:
    assert storable_text(text) == stored
    stored.encode("utf-8")  # a lone surrogate would raise here


def test_ascii_text_escapes_everything_outside_ascii() -> None:
    assert ascii_text("価格\x00é") == "\\u4fa1\\u683c\\x00\\xe9"


def test_the_message_names_the_type_as_python_prints_it() -> None:
    assert error_message(KeyError("email")) == "KeyError: 'email'"
    assert error_message(ValueError()) == "ValueError"
    assert error_message(Unprintable()) == f"{__name__}.Unprintable: <the exception's str() failed>"
    assert exception_type(Unprintable()) == f"{__name__}.Unprintable"
    # backfill's own errors were written for last_error: their message alone.
    assert error_message(PermanentFailure("the account is gone")) == "the account is gone"


def test_the_traceback_is_python_s_own_bounded_to_its_tail() -> None:
    text = traceback_text(raised(ValueError("x" * 20_000 + " deep \x00 down")))
    assert len(text) <= MAX_TRACEBACK_CHARS
    assert text.startswith("... (traceback cut: only its last")
    assert text.endswith(" deep \\x00 down\n")  # the tail: the end of the message, storable

    short = traceback_text(raised(KeyError("email")))
    assert short.startswith("Traceback (most recent call last):")
    assert short.endswith("KeyError: 'email'\n")


def test_an_unprintable_exception_still_gets_a_traceback() -> None:
    text = traceback_text(raised(Unprintable()))
    assert text.startswith("Traceback (most recent call last):")
    assert "Unprintable" in text


def test_a_payload_validation_error_leaves_out_any_cause_which_may_quote_the_payload() -> None:
    # backfill raises it without a cause today; should one ever be chained (pydantic's error quotes the
    # input), the traceback still leaves it out.
    secret = "secret-" + "address@example.com"  # built, so that no source line shows it
    try:
        try:
            raise ValueError(f"input_value={secret!r}")
        except ValueError as cause:
            raise PayloadValidationError("send", ["to"], "to: Input should be a valid string") from cause
    except PayloadValidationError as error:
        text = traceback_text(error)
    assert secret not in text
    assert text.endswith("to: Input should be a valid string\n")
    # Any other exception keeps its chain: the cause is often the story.
    try:
        try:
            raise KeyError("email")
        except KeyError as cause:
            raise RuntimeError("lookup failed") from cause
    except RuntimeError as error:
        chained = traceback_text(error)
    assert "KeyError: 'email'" in chained and "RuntimeError: lookup failed" in chained
