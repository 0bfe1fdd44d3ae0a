"""The module-level ``enqueue*`` functions and the default client they share.

The default client is built from the environment on first use. An asyncpg pool belongs to the event loop
that opened it, so the default client is kept per loop: code that calls ``asyncio.run`` twice (scripts,
tests) gets a fresh client in the second loop instead of a pool bound to a closed one.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from backfill.client.async_client import BackfillClient
from backfill.core import Job

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BackfillClient] = weakref.WeakKeyDictionary()


def default_client() -> BackfillClient:
    """The running loop's default client (``BackfillClient.from_env()`` unless one was set)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = BackfillClient.from_env()
    return client


def set_default_client(client: BackfillClient) -> None:
    """Use ``client`` for the module-level functions in the running loop (e.g. one built from settings)."""
    _clients[asyncio.get_running_loop()] = client


async def close_default_client() -> None:
    """Close the running loop's default client, if one was created."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


async def enqueue(task: str, payload: Any = None, **options: Any) -> Job:
    """:meth:`BackfillClient.enqueue` on the default client."""
    return await default_client().enqueue(task, payload, **options)


async def enqueue_fast(task: str, payload: Any = None, **options: Any) -> Job:
    """:meth:`BackfillClient.enqueue_fast` on the default client."""
    return await default_client().enqueue_fast(task, payload, **options)


async def enqueue_bulk(task: str, payload: Any = None, **options: Any) -> Job:
    """:meth:`BackfillClient.enqueue_bulk` on the default client."""
    return await default_client().enqueue_bulk(task, payload, **options)


async def enqueue_critical(task: str, payload: Any = None, **options: Any) -> Job:
    """:meth:`BackfillClient.enqueue_critical` on the default client."""
    return await default_client().enqueue_critical(task, payload, **options)
