"""Which database backfill's own connections reach: the one of a Django database alias.

Jobs are written on Django's connection (so they commit with the caller's transaction); the results reader and
the workers open asyncpg connections of their own. Both must reach the same database, so by default the URL of
those connections is built from the alias's ``DATABASES`` entry, one source of truth. A URL given in the
backend's ``OPTIONS["DATABASE_URL"]`` replaces it (a direct address for workers behind a pooler, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from backfill.core import ConfigurationError
from backfill.core.extension import remember_dsn

# The connection parameters of Django's OPTIONS that mean the same to libpq, psycopg and asyncpg; the others
# (isolation_level, pool, server_side_binding, ...) are psycopg's or Django's own and say nothing about where
# the database is.
_PASSED_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "passfile",
    "target_session_attrs",
    "application_name",
)


def url_from_django(alias: str, settings: Mapping[str, Any]) -> str:
    """A PostgreSQL URL for the ``DATABASES[alias]`` entry ``settings``: NAME, USER, PASSWORD, HOST, PORT and
    the connection options above. The password is remembered so that no log line shows it."""
    engine = str(settings.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        raise ConfigurationError(
            f"DATABASES[{alias!r}]: backfill needs PostgreSQL, this alias uses {engine or 'no ENGINE'}"
        )
    name = settings.get("NAME")
    if not name:
        raise ConfigurationError(f"DATABASES[{alias!r}]: NAME is not set")
    user, password = settings.get("USER") or "", settings.get("PASSWORD") or ""
    host, port = str(settings.get("HOST") or ""), str(settings.get("PORT") or "")
    credentials = quote(str(user), safe="")
    if password:
        credentials += ":" + quote(str(password), safe="")
    query: dict[str, str] = {}
    if host.startswith("/"):  # a Unix socket directory goes in the query, as libpq reads it
        query["host"] = host
        host = ""
    netloc = (credentials + "@" if credentials else "") + host + (":" + port if port else "")
    options = settings.get("OPTIONS") or {}
    query.update({key: str(options[key]) for key in _PASSED_OPTIONS if options.get(key) is not None})
    url = f"postgresql://{netloc}/{quote(str(name), safe='')}"
    if query:
        url += "?" + urlencode(query)
    remember_dsn(url)
    return url
