"""What an exception becomes in the database: its type, ``"Type: message"``, a bounded traceback, all storable.

Whatever a handler raises must be recordable (docs/reliability.md, rule 8), so nothing here may raise: an
exception whose ``str()`` raises still has a type, and text PostgreSQL cannot hold is escaped rather than
refused. PostgreSQL's ``text`` cannot hold a NUL character (the server rejects it, whatever the encoding), and
a lone surrogate (what ``os.fsdecode`` makes of a file name that is not UTF-8) cannot even be encoded by the
client. Both become the backslash escape Python would print (``\\x00``, ``\\udcff``), which keeps the rest of
the message readable and shows where the odd character was.

Every writer of error text (``last_error``, the error history, the dead-letter queue) goes through
:func:`storable_text`; the others here build on it.
"""

from __future__ import annotations

import builtins
import traceback

from backfill.core.errors import BackfillError, PayloadValidationError

# A traceback is for triage, not an archive: 8 KiB holds some 60 frames, and when a recursion makes it longer,
# the tail (the frames nearest the raise, and the message) is the part worth keeping.
MAX_TRACEBACK_CHARS = 8192
_CUT_MARK = "... (traceback cut: only its last {kept} characters are kept)\n"


def storable_text(text: str) -> str:
    """``text`` with what PostgreSQL text cannot hold (NUL, lone surrogates) replaced by backslash escapes."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Only lone surrogates fail to encode; every other code point has a UTF-8 form.
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def ascii_text(text: str) -> str:
    """``text`` with everything outside ASCII escaped: storable in a database of any encoding (SQL_ASCII, LATIN1)."""
    return storable_text(text).encode("ascii", "backslashreplace").decode("ascii")


def exception_type(error: BaseException) -> str:
    """The name Python's own traceback prints: ``KeyError`` for builtins, ``module.Class`` otherwise."""
    kind = type(error)
    module = getattr(kind, "__module__", None)
    name = str(getattr(kind, "__qualname__", kind.__name__))
    if module in (builtins.__name__, "__main__") or not isinstance(module, str):
        return storable_text(name)
    return storable_text(f"{module}.{name}")


def error_message(error: BaseException) -> str:
    """What goes into ``last_error``: ``"KeyError: 'email'"``, or the type alone when the message is empty.

    Node writes ``err.message`` alone; the type is added because a bare ``'email'`` says nothing in triage.
    Graphile only keeps the text, so Node reading it is unaffected. backfill's own errors (a timeout, a
    payload that does not validate, a batch's failures, PermanentFailure and RetryAfter raised by a handler)
    keep their message alone: it was written to be read there, and their type is still recorded apart.
    """
    kind = exception_type(error)
    try:
        text = str(error)
    except Exception:  # a broken __str__ must not stop the failure from being recorded
        return f"{kind}: <the exception's str() failed>"
    if isinstance(error, BackfillError) and text:
        return storable_text(text)
    return f"{kind}: {storable_text(text)}" if text else kind


def traceback_text(error: BaseException) -> str:
    """The traceback Python would print for ``error``, at most :data:`MAX_TRACEBACK_CHARS`, storable.

    A traceback holds file names, source lines and each exception's message: payload values only where the
    handler put them into a message itself. A payload validation error's cause would be pydantic's error, which
    quotes the input: backfill raises it without one, and its cause is left out here should one ever be set.
    """
    chain = not isinstance(error, PayloadValidationError)
    try:
        text = "".join(traceback.format_exception(error, chain=chain))
    except Exception:  # format_exception calls str() on every exception of the chain
        text = "".join(traceback.format_tb(error.__traceback__)) + error_message(error) + "\n"
    text = storable_text(text)
    if len(text) > MAX_TRACEBACK_CHARS:
        mark = _CUT_MARK.format(kept=MAX_TRACEBACK_CHARS - 100)
        text = mark + text[-(MAX_TRACEBACK_CHARS - 100) :]
    return text
