"""The LISTEN connection's life as events: pool:listen:connecting/success at start, pool:listen:error when the
connection is killed, then success again after the reconnect."""

from __future__ import annotations

from typing import Any

import asyncpg

from backfill.core.events import Event, Events
from backfill.core.run.worker import Worker
from backfill.core.tasks import TaskRegistry
from tests.integration.worker_support.helpers import fast_options, running, wait_listening
from tests.support.waiting import wait_for


def idle_registry() -> TaskRegistry:
    registry = TaskRegistry()

    @registry.task("noop")
    async def noop(payload: Any) -> None:
        return None

    return registry


async def test_listen_events_follow_the_connection_through_a_kill_and_reconnect(
    database_url: str, conn: asyncpg.Connection[Any]
) -> None:
    events = Events()
    seen: list[Event] = []
    for name in ("pool:listen:connecting", "pool:listen:success", "pool:listen:error"):
        events.on(name, seen.append)
    worker = Worker(database_url, tasks=idle_registry(), options=fast_options(), events=events)
    async with running(worker):
        first_pid = await wait_listening(conn)
        await wait_for(lambda: _holds(_names(seen)[:2] == ["pool:listen:connecting", "pool:listen:success"]))
        await conn.execute("select pg_terminate_backend($1)", first_pid)
        await wait_listening(conn, exclude=(first_pid,))
        await wait_for(lambda: _holds(_names(seen).count("pool:listen:success") == 2), message="a second success")
    names = _names(seen)
    assert names[2] == "pool:listen:error", names
    error = seen[2]["error"]
    assert isinstance(error, BaseException)
    assert all(event["worker_id"] == worker.worker_id for event in seen)


async def _holds(condition: bool) -> bool:
    return condition


def _names(seen: list[Event]) -> list[str]:
    return [event.name for event in seen]
