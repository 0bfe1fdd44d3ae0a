"""Waiting on a condition with a deadline, instead of sleeping a fixed time and hoping.

``wait_for`` polls an async predicate until it returns something truthy and hands that value back, so a test
can wait for a row and use it in one step::

    row = await wait_for(lambda: conn.fetchrow("select * from jobs where id = $1", job_id))
    await wait_for(lambda: worker_is_idle(), timeout=5, message="worker never went idle")

On timeout it raises ``WaitTimeout`` (an ``AssertionError``, so pytest reports it as a failed expectation)
with the last value the predicate returned, which usually says what went wrong.

``listening(dsn, channel)`` collects NOTIFY payloads on a connection of its own; ``flush()`` returns every
payload committed so far, which makes "no notification was sent" a checkable claim instead of a sleep.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")

_UNSET: object = object()

# A predicate that hangs (a query stuck behind a lock) must not outlive the deadline by much, but the last
# look at the deadline deserves enough time for one ordinary query on a loaded CI machine.
_LAST_LOOK_SECONDS = 1.0


class WaitTimeout(AssertionError):
    """The condition did not hold before the deadline."""


# `timeout` is the name callers expect from a wait helper; asyncio.timeout() could not report the last value.
async def wait_for(
    predicate: Callable[[], Awaitable[T | bool | None]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.02,
    message: str | None = None,
) -> T:
    """Await ``predicate()`` every ``interval`` seconds until it returns a truthy value, and return that value.

    The predicate is always called at least once, and once more right at the deadline, so a slow machine that
    overshoots the last interval still gets a final look. Exceptions from the predicate propagate at once: a
    broken query should fail the test, not be retried until the timeout hides it.
    """
    deadline = time.monotonic() + timeout
    what = message or getattr(predicate, "__qualname__", "condition")
    last: object = _UNSET
    while True:
        remaining = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(remaining, min(timeout, _LAST_LOOK_SECONDS))):
                value = await predicate()
        except TimeoutError:
            raise WaitTimeout(f"{what}: the predicate itself hung past the {timeout:g}s deadline") from None
        if value:
            return value  # type: ignore[return-value]  # truthy, so not None/False: it is the caller's T
        last = value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
    raise WaitTimeout(f"{what} did not hold within {timeout:g}s (last value: {last!r})")


async def wait_for_event(event: asyncio.Event, *, timeout: float = 10.0, message: str | None = None) -> None:  # noqa: ASYNC109
    """Wait for ``event`` to be set, failing the test with ``message`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        raise WaitTimeout(f"{message or 'event'} was not set within {timeout:g}s") from None


class Notifications:
    """NOTIFY payloads received on one channel, in the order they were committed."""

    def __init__(self, connection: asyncpg.Connection[Any], channel: str) -> None:
        self.connection = connection
        self.channel = channel
        self.payloads: list[str] = []

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(str(payload))

    async def wait_for_count(self, count: int, *, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
        """Wait until at least ``count`` payloads arrived; return all of them."""

        async def enough() -> list[str] | None:
            return list(self.payloads) if len(self.payloads) >= count else None

        return await wait_for(enough, timeout=timeout, message=f"{count} notifications on {self.channel!r}")

    async def flush(self, *, timeout: float = 10.0) -> list[str]:  # noqa: ASYNC109
        """Every payload committed before this call, and nothing else.

        PostgreSQL delivers notifications in commit order, so once a marker sent now has come back, anything
        committed earlier has arrived too. The marker itself is dropped from ``payloads``.
        """
        marker = f"flush-{uuid.uuid4().hex}"
        await self.connection.execute("select pg_notify($1::text, $2::text)", self.channel, marker)

        async def marker_seen() -> bool:
            return marker in self.payloads

        await wait_for(marker_seen, timeout=timeout, message=f"flush marker on {self.channel!r}")
        self.payloads.remove(marker)
        return list(self.payloads)


@asynccontextmanager
async def listening(dsn: str, channel: str) -> AsyncIterator[Notifications]:
    """LISTEN on ``channel`` over a new connection for the duration of the block."""
    connection = await asyncpg.connect(dsn)
    try:
        notifications = Notifications(connection, channel)
        await connection.add_listener(channel, notifications._on_notify)
        yield notifications
    finally:
        await connection.close()
