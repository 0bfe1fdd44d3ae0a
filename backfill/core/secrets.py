"""Keeping database passwords out of everything backfill writes: log lines, error messages, tracebacks.

Two defences, because neither is enough alone:

* :func:`redact_dsn` shows a connection string with its password masked, whatever its shape: a URL whose
  password holds unencoded ``#``, ``/``, ``?``, ``@`` or ``:`` (the userinfo runs to the *last* ``@``), a
  ``?password=`` query parameter, libpq's ``host=... password=...`` form.
* :func:`scrub` masks every password this process has been handed, wherever it appears. A pattern cannot do
  that alone: asyncpg quotes *pieces* of a DSN it cannot parse (``invalid literal for int(): 'hunter2'`` for
  ``postgresql://u:hunter2#x@h/db``). So every DSN backfill is given goes through :func:`remember_dsn`,
  and its password, its percent-decoded form and the pieces between its special characters are masked
  (pieces shorter than four characters are not: they would mask ordinary words). ``PGPASSWORD`` too.

:func:`check_dsn` refuses, with a message that quotes nothing secret, the URLs asyncpg would misread.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import quote, unquote

from backfill.core.errors import ConfigurationError

__all__ = [
    "MASK",
    "ScrubbingFormatter",
    "check_dsn",
    "dsn_passwords",
    "dsn_problem",
    "redact_dsn",
    "remember_dsn",
    "scrub",
]

MASK = "***"
_MIN_PIECE = 4
# What splits a password into the pieces an error message may quote on their own.
_SEPARATORS = re.compile(r"[#/?@:%&=;,\s'\"\\]+")
# password=value in a query string or libpq's keyword form; a quoted value may hold spaces.
_PASSWORD_PAIR = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.IGNORECASE)
# scheme://user:password@ inside a longer text: greedy to the last '@' of the token, so a password holding
# a raw '@' is masked whole rather than leaking its tail (over-masking is the safe failure).
_URL_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)\S*@")
_SCHEMES = ("postgres://", "postgresql://")


class _Known:
    """The passwords remembered so far; replaced whole (never mutated) so that readers need no lock."""

    secrets: frozenset[str] = frozenset()
    lock = threading.Lock()


def _userinfo_password(dsn: str) -> str | None:
    """The password of a URL's userinfo: after the first ``:`` of what precedes the last ``@``."""
    if "://" not in dsn:
        return None
    rest = dsn.split("://", 1)[1]
    at = rest.rfind("@")
    if at < 0 or ":" not in rest[:at]:
        return None
    return rest[:at].split(":", 1)[1]


def dsn_passwords(dsn: str) -> list[str]:
    """Every password ``dsn`` holds, as written: the URL's userinfo one and any ``password=`` value."""
    found = [password] if (password := _userinfo_password(dsn)) else []
    for match in _PASSWORD_PAIR.finditer(dsn):
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return [value for value in found if value]


def redact_dsn(dsn: str) -> str:
    """``dsn`` with every password replaced by ``***``, for logs and error messages."""
    if "://" not in dsn:
        return _PASSWORD_PAIR.sub(r"\1" + MASK, dsn)
    scheme, rest = dsn.split("://", 1)
    at = rest.rfind("@")
    if at >= 0 and ":" in rest[:at]:
        rest = f"{rest[:at].split(':', 1)[0]}:{MASK}@{rest[at + 1 :]}"
    return f"{scheme}://" + _PASSWORD_PAIR.sub(r"\1" + MASK, rest)


def _variants(password: str) -> set[str]:
    forms = {password, unquote(password), quote(password, safe="")}
    pieces = {piece for form in forms for piece in _SEPARATORS.split(form) if len(piece) >= _MIN_PIECE}
    return {form for form in forms if form} | pieces


def remember_dsn(dsn: str) -> None:
    """Remember the passwords of ``dsn`` so that :func:`scrub` masks them (and their pieces) from now on."""
    new = set().union(*(_variants(password) for password in dsn_passwords(dsn)))
    if new - _Known.secrets:
        with _Known.lock:
            _Known.secrets = _Known.secrets | new


def scrub(text: str) -> str:
    """``text`` with URL credentials, ``password=`` values and every remembered password masked."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1" + MASK + "@", text)
    if "password" in text.lower():
        text = _PASSWORD_PAIR.sub(r"\1" + MASK, text)
    secrets = _Known.secrets
    env_password = os.environ.get("PGPASSWORD")
    if env_password:
        secrets = secrets | _variants(env_password)
    # Longest first, so that a whole password is masked before its pieces would split it.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def dsn_problem(dsn: str) -> str | None:
    """Why asyncpg would misread ``dsn``, quoting nothing secret; ``None`` when it looks usable. A password
    with a raw ``#``, ``/``, ``?`` or ``@`` turns part of it into a port, a path or a host."""
    hint = "percent-encode it in the user name and password (# → %23, / → %2F, ? → %3F, @ → %40)"
    if not dsn.startswith(_SCHEMES):
        return "must be a postgres:// or postgresql:// URL"  # asyncpg takes no libpq key=value string
    if "#" in dsn:
        return f"the URL holds a raw '#', which would end it there; {hint}"
    authority = re.split(r"[/?]", dsn.split("://", 1)[1], maxsplit=1)[0]
    if authority.count("@") > 1:
        return f"the URL holds more than one '@' before its host; {hint}"
    for host in authority.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        port = port.partition(":")[2] if ":" in port else ""
        if port and not port.isdigit():
            # Most likely a '/' or '?' in the password cut the URL short: the "port" is then part of the
            # password, so it is not quoted.
            return f"the URL's port is not a number; if the password holds '/' or '?', {hint}"
    return None


def check_dsn(dsn: str, source: str) -> None:
    """Raise :class:`ConfigurationError` naming ``source`` (the option or variable) when :func:`dsn_problem`
    finds one; the DSN is shown with its password masked."""
    problem = dsn_problem(dsn)
    if problem is not None:
        raise ConfigurationError(f"{source}: {problem}, got {redact_dsn(dsn)!r}")


class ScrubbingFormatter(logging.Formatter):
    """A formatter whose output — message, arguments, traceback — has every known password masked."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))
