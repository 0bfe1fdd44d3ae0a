"""The admin API served by ``backfill run`` as a real process on ``BACKFILL_ADMIN_PORT``, called over real HTTP:
it answers and changes state, asks for the token when one is set, stops with the runner on SIGTERM (exit 0),
and a bad admin configuration (off loopback without a token, a port in use) stops start-up with exit 2 naming
the variable, before anything was changed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import asyncpg

from backfill.core import SchemaName
from backfill.exit_codes import EXIT_OK, EXIT_USAGE
from backfill.migrations import migrate_all
from tests.integration.worker_support.processes import RunnerProcess, runner_environment
from tests.support.waiting import wait_for

SCHEMA = SchemaName("graphile_worker")
TOKEN = "process-admin-token-0123456789abcdef"
# Straight to the runner: no HTTP proxy from the environment between the test and 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _request(url: str, *, method: str = "GET", body: Any = None, token: str | None = None) -> Answer:
    """One HTTP request (blocking: run it in a thread); an HTTP error status is an answer, not an exception."""
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request, timeout=5) as response:
            return Answer(response.status, {k.lower(): v for k, v in response.headers.items()}, json.load(response))
    except urllib.error.HTTPError as error:
        with error:
            raw = error.read()
            return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, json.loads(raw or b"null"))


async def call(port: int, path: str, **options: Any) -> Answer:
    return await asyncio.to_thread(_request, f"http://127.0.0.1:{port}{path}", **options)


async def _answer_or_none(port: int, path: str, token: str | None = None) -> Answer | None:
    try:
        return await call(port, path, token=token)
    except OSError:  # not listening (yet, or any more)
        return None


async def wait_until_serving(runner: RunnerProcess, port: int, token: str | None = None) -> Answer:
    """The first answer of GET /api/overview (any HTTP status: the server is up); fails if the runner exits."""

    async def answered() -> Answer | None:
        if runner.process.returncode is not None:
            raise AssertionError(f"the runner exited ({runner.process.returncode}):\n{runner.output[-3000:]}")
        return await _answer_or_none(port, "/api/overview", token)

    return await wait_for(answered, timeout=30, message="the admin API never answered")


async def counts(pool: asyncpg.Pool[Any]) -> dict[str, int]:
    tables = ("_private_jobs", "backfill_pauses", "backfill_cancellations", "backfill_audit", "backfill_workers")
    return {table: int(await pool.fetchval(f"select count(*) from graphile_worker.{table}")) for table in tables}


async def test_backfill_run_serves_the_admin_api_and_stops_with_it_on_sigterm(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    port = _free_port()
    env = runner_environment(database_url, BACKFILL_ADMIN_PORT=str(port), BACKFILL_ADMIN_HOST="127.0.0.1")
    runner = await RunnerProcess.start("backfill run", env)
    try:
        first = await wait_until_serving(runner, port)
        assert first.status == 200, first
        assert {lane["name"] for lane in first.body["lanes"]} >= {"fast", "bulk"}
        assert first.headers["cache-control"] == "no-store"

        paused = await call(port, "/api/pauses", method="POST", body={"kind": "task", "name": "x", "reason": "test"})
        assert paused.status == 200, paused
        listed = await call(port, "/api/pauses")
        assert listed.status == 200, listed
        assert [(p["kind"], p["name"], p["reason"]) for p in listed.body["pauses"]] == [("task", "x", "test")]
        rows = await pool.fetch("select kind, name from graphile_worker.backfill_pauses")
        assert [(row["kind"], row["name"]) for row in rows] == [("task", "x")]
        audit = await pool.fetch("select action, actor from graphile_worker.backfill_audit")
        assert [row["action"] for row in audit] == ["pause"]
        assert "loopback" in audit[0]["actor"]

        document = await call(port, "/api/openapi.json")
        assert document.status == 200, document
        assert document.body["openapi"] == "3.1.0"
        assert "/api/pauses" in document.body["paths"]

        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == EXIT_OK, runner.output[-3000:]
    assert await _answer_or_none(port, "/api/overview") is None, "still answering after the runner exited"
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_workers") == 0


async def test_with_a_token_the_served_api_answers_only_requests_that_carry_it(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    port = _free_port()
    env = runner_environment(
        database_url, BACKFILL_ADMIN_PORT=str(port), BACKFILL_ADMIN_HOST="127.0.0.1", BACKFILL_ADMIN_TOKEN=TOKEN
    )
    runner = await RunnerProcess.start("backfill run", env)
    try:
        without = await wait_until_serving(runner, port)
        assert without.status == 401, without
        assert without.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in json.dumps(without.body)
        wrong = await call(port, "/api/pauses", token="not-the-token-0123456789abcdef")
        assert wrong.status == 401, wrong
        refused_write = await call(port, "/api/pauses", method="POST", body={"kind": "task", "name": "x"})
        assert refused_write.status == 401, refused_write
        assert await pool.fetchval("select count(*) from graphile_worker.backfill_pauses") == 0

        answered = await call(port, "/api/overview", token=TOKEN)
        assert answered.status == 200, answered
        listed = await call(port, "/api/pauses", token=TOKEN)
        assert listed.status == 200 and listed.body == {"pauses": []}, listed

        runner.send(signal.SIGTERM)
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == EXIT_OK, runner.output[-3000:]
    assert TOKEN not in runner.output


async def test_off_loopback_without_a_token_backfill_run_exits_2_naming_the_token(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    await migrate_all(pool, SCHEMA)  # so that "nothing was created" can be checked table by table
    before = await counts(pool)
    port = _free_port()
    env = runner_environment(database_url, BACKFILL_ADMIN_PORT=str(port), BACKFILL_ADMIN_HOST="0.0.0.0")
    runner = await RunnerProcess.start("backfill run", env)
    try:
        code = await runner.exit_code(within=30)
    finally:
        await runner.kill()
    assert code == EXIT_USAGE, runner.output[-3000:]
    assert "BACKFILL_ADMIN_TOKEN" in runner.output
    assert "Traceback" not in runner.output
    assert await counts(pool) == before
    assert await _answer_or_none(port, "/api/overview") is None


async def test_a_port_in_use_stops_backfill_run_with_exit_2_naming_the_port(
    database_url: str, pool: asyncpg.Pool[Any]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        env = runner_environment(database_url, BACKFILL_ADMIN_PORT=str(port), BACKFILL_ADMIN_HOST="127.0.0.1")
        runner = await RunnerProcess.start("backfill run", env)
        try:
            code = await runner.exit_code(within=30)
        finally:
            await runner.kill()
    assert code == EXIT_USAGE, runner.output[-3000:]
    assert "BACKFILL_ADMIN_PORT" in runner.output
    assert str(port) in runner.output
    assert "Traceback" not in runner.output
    # It stopped before any lane started: no worker left registered, no job touched.
    assert await pool.fetchval("select count(*) from graphile_worker.backfill_workers") == 0
    assert await pool.fetchval("select count(*) from graphile_worker._private_jobs") == 0
