"""No password reaches the output of any entry point, whatever the connection string looks like.

Every entry point (the CLI commands, ``backfill run`` and ``backfill demo``, and the ``WorkerRunner`` and
``BackfillClient`` APIs in a script of their own) runs as a real process against a list of awkward DSNs:
passwords holding unencoded ``#``, ``/``, ``?``, ``@``, ``:`` or a space, a percent-encoded one, libpq's
key=value form, ``?password=``, and ``PGPASSWORD``; pointed at the real server with a database that does not
exist, or at a closed port. stdout and stderr together must hold neither the password nor any part of it
around its special character, no traceback from the CLI, and the exit code docs/cli.md gives: 2 for a string
that cannot be parsed, 1 for a database that cannot be reached.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import run_python
from tests.support.proxy import TcpProxy, server_address

TASKS = "tests.integration.worker_support.runner_tasks"
# The parts of every password below; none may appear in any output. Each is long enough not to occur by chance.
SECRET_PARTS = ("hunter2", "sekrit")
PROCESS_TIMEOUT = 60.0
# Two processes at a time: the machine is shared, and each process is mostly Python start-up.
PARALLEL = 2


@dataclass(frozen=True)
class Case:
    name: str
    dsn: str  # {host} and {port} are filled in with the test server's, or a closed port
    exit_code: int  # what the CLI must exit with: 2 unparsable, 1 unreachable / no such database
    env: dict[str, str] = field(default_factory=dict)
    closed_port: bool = False


CASES = (
    Case("hash", "postgresql://postgres:hunter2#sekrit@{host}:{port}/bf_no_such_db", 2),
    Case("slash", "postgresql://postgres:hunter2/sekrit@{host}:{port}/bf_no_such_db", 2),
    Case("question_mark", "postgresql://postgres:hunter2?sekrit@{host}:{port}/bf_no_such_db", 2),
    Case("at_sign", "postgresql://postgres:hunter2@sekrit@{host}:{port}/bf_no_such_db", 2),
    Case("colon", "postgresql://postgres:hunter2:sekrit@{host}:{port}/bf_no_such_db", 1),
    Case("space", "postgresql://postgres:hunter2 sekrit@{host}:{port}/bf_no_such_db", 1),
    Case("percent_encoded", "postgresql://postgres:hunter2%23sekrit@{host}:{port}/bf_no_such_db", 1),
    Case("keyword_value", "host={host} port={port} user=postgres password=hunter2sekrit dbname=bf_no_such_db", 2),
    Case("query_password", "postgresql://postgres@{host}:{port}/bf_no_such_db?password=hunter2sekrit", 1),
    Case("pgpassword", "postgresql://postgres@{host}:{port}/bf_no_such_db", 1, env={"PGPASSWORD": "hunter2sekrit"}),
    Case("closed_port_hash", "postgresql://postgres:hunter2#sekrit@127.0.0.1:{port}/db", 2, closed_port=True),
    Case("closed_port", "postgresql://postgres:hunter2/sekrit%40@127.0.0.1:{port}/db", 2, closed_port=True),
    Case("closed_port_plain", "postgresql://postgres:hunter2sekrit@127.0.0.1:{port}/db", 1, closed_port=True),
)

_CLIENT_SCRIPT = """
import asyncio, os, backfill
async def main():
    client = backfill.BackfillClient(os.environ["DATABASE_URL"])
    try:
        await client.enqueue("runner.echo", {})
    finally:
        await client.close()
asyncio.run(main())
"""
_RUNNER_SCRIPT = "import sys; from backfill.runner import main; sys.exit(main())"

# Entry point -> (argv after the interpreter, whether the DSN goes in -c rather than DATABASE_URL, is a CLI).
ENTRY_POINTS: dict[str, tuple[list[str], bool, bool]] = {
    "worker": (["-m", "backfill", "worker", "--once", "--tasks", TASKS], True, True),
    "migrate": (["-m", "backfill", "migrate"], True, True),
    "jobs_list": (["-m", "backfill", "jobs", "list"], True, True),
    "dlq_list": (["-m", "backfill", "dlq", "list"], False, True),
    "add": (["-m", "backfill", "add", "runner.echo", "{}"], True, True),
    "run": (["-m", "backfill", "run", "--once", "--env-file", os.devnull], False, True),
    "demo": (["-m", "backfill", "demo", "--jobs", "1"], False, True),
    "worker_runner_api": (["-c", _RUNNER_SCRIPT], False, False),
    "client_api": (["-c", _CLIENT_SCRIPT], False, False),
}


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def _server_address(server: PostgresServer) -> AsyncIterator[tuple[str, int]]:
    """A TCP address of the test server: its own, or a proxy's to its unix socket (the embedded server listens
    on a socket only, and these DSNs need a host and port to hide passwords in)."""
    address = server_address(server.admin_dsn)
    if not isinstance(address, str):
        yield address
        return
    proxy = TcpProxy(address)
    await proxy.start()
    try:
        yield "127.0.0.1", proxy.port
    finally:
        await proxy.close()


async def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    finished = await run_python(*argv, env=env, within=PROCESS_TIMEOUT, merge_stderr=True)
    return finished.code, finished.stdout


def _base_env() -> dict[str, str]:
    drop = ("BACKFILL_", "PG", "DATABASE_URL", "GRAPHILE_WORKER_SCHEMA")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env.update(
        BACKFILL_TASK_MODULES=TASKS,
        BACKFILL_CONNECT_TIMEOUT_SECONDS="0",  # `run` must not wait for a database that will not come
        BACKFILL_LOG_FORMAT="json",
    )
    return env


def _problems(entry: str, case: Case, rc: int, output: str) -> list[str]:
    found = []
    leaked = [part for part in SECRET_PARTS if part in output.lower()]
    if leaked:
        found.append(f"{entry}/{case.name}: output holds {leaked}:\n{output}")
    _, _, is_cli = ENTRY_POINTS[entry]
    if is_cli:
        if "Traceback" in output:
            found.append(f"{entry}/{case.name}: a traceback instead of a clear error:\n{output}")
        if rc != case.exit_code:
            found.append(f"{entry}/{case.name}: exit {rc}, expected {case.exit_code}:\n{output}")
    elif rc == 0:
        found.append(f"{entry}/{case.name}: succeeded against a database that does not exist:\n{output}")
    return found


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
async def test_no_password_in_any_output(entry: str, postgres_server: PostgresServer) -> None:
    async with _server_address(postgres_server) as (host, port):
        problems = await _problems_of(entry, host, port)
    assert not problems, f"{len(problems)} problem(s):\n\n" + "\n\n".join(problems)


async def _problems_of(entry: str, host: str, port: int) -> list[str]:
    closed = _closed_port()
    argv, dsn_as_option, _ = ENTRY_POINTS[entry]
    gate = asyncio.Semaphore(PARALLEL)

    async def one(case: Case) -> list[str]:
        dsn = case.dsn.format(host=host, port=closed if case.closed_port else port)
        env = _base_env() | case.env
        args = list(argv)
        if dsn_as_option:
            args += ["-c", dsn]
        else:
            env["DATABASE_URL"] = dsn
        async with gate:
            rc, output = await _run(args, env)
        return _problems(entry, case, rc, output)

    results = await asyncio.gather(*(one(case) for case in CASES))
    return [problem for found in results for problem in found]
