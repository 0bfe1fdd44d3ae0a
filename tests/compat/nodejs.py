"""Driving the real Node graphile-worker from the tests: its CLI, a worker process and its WorkerUtils.

Every process started here is killed in a ``finally`` if it has not exited by then, so a failing or
timed-out test never leaves a Node worker polling a database that is about to be dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tests.support.node import NodeToolchain

SCRIPTS = Path(__file__).resolve().parent / "node"
# Node loads graphile.config.* from its working directory; this folder holds only our scripts, so a
# config file someone adds at the repository root cannot change what the tests run.
NODE_CWD = SCRIPTS

_PROCESS_TIMEOUT = 60.0
_STOP_TIMEOUT = 15.0


class NodeProcessError(RuntimeError):
    """A Node process failed; the message carries its exit code and stderr."""


def node_connection_string(dsn: str) -> str:
    """``dsn`` in a form node-postgres reads the same way libpq does.

    A unix-socket DSN as the embedded server writes it (``postgresql://postgres:@/db?host=/tmp/x``) has an empty host,
    which WHATWG URL parsing (used by pg-connection-string) rejects; node-postgres then falls back on a
    dummy host, which works today but only by accident. Putting the socket directory, percent-encoded, in
    the host position is the form node-postgres documents, so that is what Node gets.
    """
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    socket_dir = query.pop("host", None)
    if socket_dir is None or not socket_dir.startswith("/"):
        return dsn
    user = quote(unquote(parts.username or ""), safe="")
    password = parts.password
    credentials = user + (f":{quote(unquote(password), safe='')}" if password else "")
    port = query.pop("port", None) or (str(parts.port) if parts.port else None)
    netloc = f"{credentials}@" if credentials else ""
    netloc += quote(socket_dir, safe="")
    if port:
        netloc += f":{port}"
    rest = f"?{urlencode(query)}" if query else ""
    return f"{parts.scheme}://{netloc}{parts.path}{rest}"


@dataclass(frozen=True)
class NodeJob:
    """A job for Node to add; ``spec()`` uses graphile-worker's TaskSpec names."""

    identifier: str
    payload: Any = None
    queue_name: str | None = None
    run_at: datetime | None = None
    priority: int | None = None
    max_attempts: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None
    flags: Sequence[str] | None = None
    via_quick_add_job: bool = False

    def spec(self) -> dict[str, Any]:
        spec = {
            "queueName": self.queue_name,
            "runAt": self.run_at.isoformat() if self.run_at else None,
            "priority": self.priority,
            "maxAttempts": self.max_attempts,
            "jobKey": self.job_key,
            "jobKeyMode": self.job_key_mode,
            "flags": list(self.flags) if self.flags is not None else None,
        }
        return {key: value for key, value in spec.items() if value is not None}

    def to_op(self) -> dict[str, Any]:
        """The ``addJob`` op of ``utils.mjs``."""
        return {
            "op": "addJob",
            "identifier": self.identifier,
            "payload": self.payload if self.payload is not None else {},
            "spec": self.spec(),
            "via": "quick" if self.via_quick_add_job else "utils",
        }


@dataclass
class NodeWorkerProcess:
    """A running ``worker.mjs`` in "run" mode; ``stderr`` collects its log while it runs."""

    process: asyncio.subprocess.Process
    stderr: list[str] = field(default_factory=list)

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


@dataclass(frozen=True)
class NodeRunner:
    """The toolchain plus the conventions of these tests (working directory, environment, timeouts)."""

    toolchain: NodeToolchain

    def _env(self, **extra: str) -> dict[str, str]:
        env = self.toolchain.env(**extra)
        # Node must see only the schema and database each test passes explicitly.
        for name in ("DATABASE_URL", "GRAPHILE_WORKER_SCHEMA", "PGDATABASE"):
            if name not in extra:
                env.pop(name, None)
        return env

    async def cli(self, dsn: str, *args: str, schema: str | None = None) -> str:
        """Run ``graphile-worker -c DSN [-s SCHEMA] ARGS``; its stdout, or NodeProcessError."""
        argv = self.toolchain.graphile_worker("-c", node_connection_string(dsn), *args)
        if schema is not None:
            argv += ["--schema", schema]
        return await _run_to_completion(argv, self._env())

    async def run_argv(self, argv: Sequence[str]) -> str:
        """Run any Node command line (e.g. an older graphile-worker's CLI) in this runner's environment."""
        return await _run_to_completion(argv, self._env())

    async def schema_only(self, dsn: str, schema: str | None = None) -> None:
        await self.cli(dsn, "--schema-only", schema=schema)

    async def run_once(self, dsn: str, schema: str | None = None) -> str:
        """Run ``worker.mjs`` in runOnce mode (one worker, concurrency 1) until no job is runnable."""
        config = {"connectionString": node_connection_string(dsn), "schema": schema, "mode": "once"}
        env = self._env(COMPAT_WORKER_CONFIG=json.dumps(config))
        return await _run_to_completion(self.toolchain.command(SCRIPTS / "worker.mjs"), env)

    async def utils(self, dsn: str, ops: Sequence[dict[str, Any]], schema: str | None = None) -> list[Any]:
        """Apply ``ops`` in order with ``utils.mjs`` (see there for the format); one result per op."""
        config = {"connectionString": node_connection_string(dsn), "schema": schema, "ops": list(ops)}
        env = self._env(COMPAT_UTILS_CONFIG=json.dumps(config))
        output = await _run_to_completion(self.toolchain.command(SCRIPTS / "utils.mjs"), env)
        results: list[Any] = json.loads(output.strip().splitlines()[-1])
        return results

    async def enqueue(self, dsn: str, jobs: Sequence[NodeJob], schema: str | None = None) -> list[int]:
        """Add ``jobs`` in order with Node's WorkerUtils.addJob/quickAddJob; returns their ids."""
        results = await self.utils(dsn, [job.to_op() for job in jobs], schema=schema)
        failed = [result for result in results if isinstance(result, dict)]
        if failed:
            raise NodeProcessError(f"Node could not add some jobs: {failed}")
        return [int(job_id) for job_id in results]

    @contextlib.asynccontextmanager
    async def worker(
        self, dsn: str, *, schema: str | None = None, concurrency: int = 4, poll_interval_ms: int = 100
    ) -> AsyncIterator[NodeWorkerProcess]:
        """A Node worker pool running until the block ends (then stopped gracefully, killed if need be)."""
        config = {
            "connectionString": node_connection_string(dsn),
            "schema": schema,
            "mode": "run",
            "concurrency": concurrency,
            "pollInterval": poll_interval_ms,
        }
        process = await asyncio.create_subprocess_exec(
            *self.toolchain.command(SCRIPTS / "worker.mjs"),
            cwd=NODE_CWD,
            env=self._env(COMPAT_WORKER_CONFIG=json.dumps(config)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        worker = NodeWorkerProcess(process)
        drain = asyncio.create_task(_collect_lines(process.stderr, worker.stderr))
        try:
            await _wait_until_ready(worker)
            yield worker
            await _stop_gracefully(worker)
        finally:
            await _kill(process)
            await drain


async def _run_to_completion(argv: Sequence[str], env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=NODE_CWD, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), _PROCESS_TIMEOUT)
    finally:
        await _kill(process)
    if process.returncode != 0:
        raise NodeProcessError(
            f"{Path(argv[1]).name} exited with {process.returncode}:\n{stderr.decode(errors='replace')}"
        )
    return stdout.decode()


async def _wait_until_ready(worker: NodeWorkerProcess) -> None:
    assert worker.process.stdout is not None
    try:
        line = await asyncio.wait_for(worker.process.stdout.readline(), _PROCESS_TIMEOUT)
    except TimeoutError:
        raise NodeProcessError("the Node worker did not report ready in time:\n" + "".join(worker.stderr)) from None
    if not line:
        await worker.process.wait()
        raise NodeProcessError(
            f"the Node worker exited with {worker.process.returncode} before it was ready:\n" + "".join(worker.stderr)
        )
    if json.loads(line).get("event") != "ready":
        raise NodeProcessError(f"unexpected first line from the Node worker: {line!r}")


async def _stop_gracefully(worker: NodeWorkerProcess) -> None:
    """Close stdin (the script's cue to stop) and wait for a clean exit."""
    assert worker.process.stdin is not None
    worker.process.stdin.close()
    try:
        await asyncio.wait_for(worker.process.wait(), _STOP_TIMEOUT)
    except TimeoutError:
        raise NodeProcessError("the Node worker did not stop within the grace period") from None
    if worker.process.returncode != 0:
        raise NodeProcessError(f"the Node worker exited with {worker.process.returncode}:\n" + "".join(worker.stderr))


async def _collect_lines(stream: asyncio.StreamReader | None, into: list[str]) -> None:
    if stream is None:
        return
    while line := await stream.readline():
        into.append(line.decode(errors="replace"))


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"
