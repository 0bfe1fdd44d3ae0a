"""Where a test session's PostgreSQL is: a server given by URL, or a throwaway embedded one started for it.

A URL given (the plugin takes ``--backfill-database-url``, the ``backfill_database_url`` ini option, then
``DATABASE_URL``) names a server and a database to connect to for administration; its user must be allowed to
create databases, because every test gets a database of its own there (see :mod:`backfill.testing.databases`).
Without one, :mod:`backfill.embedded` starts a server in a temporary directory (the ``embedded`` extra), which
is stopped and deleted with the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from backfill.core import ConfigurationError
from backfill.core.extension import dsn_problem, redact_dsn, remember_dsn
from backfill.embedded import EmbeddedPostgres, start_embedded_postgres


@dataclass(frozen=True)
class DatabaseServer:
    """A PostgreSQL server that tests may create databases on; ``admin_dsn`` connects to its maintenance
    database. ``embedded`` is the server this session started, ``None`` when it was given by URL."""

    admin_dsn: str
    embedded: EmbeddedPostgres | None = None

    @classmethod
    def start(cls, url: str | None, *, source: str = "DATABASE_URL") -> DatabaseServer:
        """The server of ``url``, or a new embedded one when ``url`` is empty. ``source`` names where the URL
        came from, for the error a malformed one raises (which never shows its password)."""
        if not url:
            embedded = start_embedded_postgres(prefix="backfill-testing-pg-")
            return cls(embedded.dsn, embedded)
        problem = dsn_problem(url)
        if problem is not None:
            raise ConfigurationError(f"{source}: {problem}")
        remember_dsn(url)  # so that no log line or message shows its password, even in pieces
        return cls(url)

    @property
    def redacted(self) -> str:
        """The admin DSN with its password masked, for messages."""
        return redact_dsn(self.admin_dsn)

    def dsn_for(self, database: str) -> str:
        """The admin DSN pointing at ``database`` instead: same host, user, password and options."""
        return with_database(self.admin_dsn, database)

    def stop(self) -> None:
        """Stop the embedded server, if this session started one; a server given by URL is left alone."""
        if self.embedded is not None:
            self.embedded.stop()


def with_database(dsn: str, database: str) -> str:
    """``dsn`` naming ``database``: the path replaced, and any ``dbname``/``database`` query option dropped
    (it would win over the path)."""
    parts = urlsplit(dsn)
    query = [(key, value) for key, value in parse_qsl(parts.query) if key not in {"dbname", "database"}]
    return urlunsplit(parts._replace(path="/" + database, query=urlencode(query)))
