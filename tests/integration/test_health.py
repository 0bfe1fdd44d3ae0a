"""/healthz and /readyz of a real WorkerRunner, over real HTTP: ready only while every lane runs and the database
answers (through a proxy the test cuts), live only while the event loop answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backfill.core.tasks import TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from tests.support.proxy import TcpProxy, server_address, through
from tests.support.waiting import wait_for, wait_for_event


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _settings(database_url: str, **overrides: Any) -> BackfillSettings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "fast_queue_concurrency": 1,
        "bulk_queue_concurrency": 1,
        "shutdown_grace_seconds": 10.0,
        "metrics_host": "127.0.0.1",
        "metrics_port": _free_port(),
    }
    values.update(overrides)
    return BackfillSettings.load(env_file=None, **values)


def get(url: str) -> tuple[int, str]:
    """Status and body; a 503 is an answer here, not an error."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()


async def probe(runner: WorkerRunner, path: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, f"http://127.0.0.1:{runner.settings.metrics_port}{path}")


async def answers(runner: WorkerRunner, path: str, status: int) -> tuple[int, str] | None:
    found = await probe(runner, path)
    return found if found[0] == status else None


@pytest.fixture
def registry() -> TaskRegistry:
    return TaskRegistry()


async def test_ready_only_while_every_lane_runs_and_not_during_the_drain(
    database_url: str, registry: TaskRegistry
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @registry.task("slow")
    async def slow(payload: Any) -> None:
        started.set()
        await release.wait()

    runner = WorkerRunner(_settings(database_url), tasks=registry)
    assert runner.ready is False  # not started
    await runner.start()
    stopping: asyncio.Task[Any] | None = None
    try:
        _status, body = await wait_for(lambda: answers(runner, "/readyz", 200), timeout=10, message="ready")
        assert body == "ok\n" and runner.ready
        assert await probe(runner, "/healthz") == (200, "ok\n")
        status, metrics = await probe(runner, "/metrics")
        assert status == 200
        # The runner's own registry describes the whole process, and each lane's capacity beside its use.
        for line in ('backfill_lane_slots{lane="fast"} 1.0', 'backfill_busy_slots{lane="bulk"} 0.0'):
            assert line in metrics
        for name in ("process_resident_memory_bytes", "python_gc_objects_collected_total", "backfill_build_info"):
            assert f"# TYPE {name}" in metrics

        await runner.pool.execute("select graphile_worker.add_job('slow', '{}'::json)")
        await wait_for_event(started, timeout=10, message="the slow job starts")
        stopping = asyncio.create_task(runner.stop())  # drains: the slow job holds it open
        _status, body = await wait_for(lambda: answers(runner, "/readyz", 503), timeout=10, message="not ready")
        assert "lanes not running: fast, bulk" in body
        assert runner.ready is False
        assert (await probe(runner, "/healthz"))[0] == 200  # draining, but alive
    finally:
        release.set()
        await asyncio.wait_for(stopping if stopping is not None else runner.stop(), 20)
    assert runner.ready is False
    with pytest.raises(urllib.error.URLError):
        get(f"http://127.0.0.1:{runner.settings.metrics_port}/readyz")  # the server is gone with the runner


async def test_healthz_fails_while_a_handler_blocks_the_loop(database_url: str, registry: TaskRegistry) -> None:
    saw_503 = threading.Event()
    stop_probing = threading.Event()
    statuses: list[int] = []

    @registry.task("blocker")
    async def blocker(payload: Any) -> None:
        # Blocks the loop (the bug /healthz exists to catch) until the prober has seen the 503, 10 s at most.
        saw_503.wait(10)

    runner = WorkerRunner(_settings(database_url), tasks=registry)
    url = f"http://127.0.0.1:{runner.settings.metrics_port}/healthz"

    def prober() -> None:
        while not stop_probing.is_set():
            try:
                status, _body = get(url)
            except OSError:
                continue  # not listening yet
            statuses.append(status)
            if status == 503:
                saw_503.set()
            time.sleep(0.05)

    await runner.start()
    thread = threading.Thread(target=prober, daemon=True)
    thread.start()
    try:
        await wait_for(lambda: answers(runner, "/healthz", 200), timeout=10, message="live")
        await runner.pool.execute("select graphile_worker.add_job('blocker', '{}'::json)")
        await wait_for(lambda: _true(saw_503.is_set()), timeout=15, message="/healthz answered 503")
        # The loop is back: live again.
        await wait_for(lambda: answers(runner, "/healthz", 200), timeout=10, message="live again")
    finally:
        stop_probing.set()
        saw_503.set()
        await asyncio.to_thread(thread.join, 10)
        await asyncio.wait_for(runner.stop(), 20)
    assert 503 in statuses


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    forwarding = TcpProxy(server_address(database_url))
    await forwarding.start()
    try:
        yield forwarding
    finally:
        await forwarding.close()


async def test_readyz_fails_while_the_database_is_unreachable_and_recovers(
    database_url: str, registry: TaskRegistry, proxy: TcpProxy
) -> None:
    @registry.task("noop")
    async def noop(payload: Any) -> None:
        pass

    through_proxy = through(database_url, proxy.port)
    runner = WorkerRunner(_settings(through_proxy, connect_timeout_seconds=1.0), tasks=registry)
    await runner.start()
    try:
        await wait_for(lambda: answers(runner, "/readyz", 200), timeout=10, message="ready")
        await proxy.cut()
        _status, body = await wait_for(lambda: answers(runner, "/readyz", 503), timeout=15, message="not ready")
        assert "database not answering" in body
        assert (await probe(runner, "/healthz"))[0] == 200  # the process is fine: no reason to restart it
        await proxy.restore()
        await wait_for(lambda: answers(runner, "/readyz", 200), timeout=20, message="ready again")
    finally:
        await asyncio.wait_for(runner.stop(), 30)


async def _true(value: bool) -> bool:
    return value
