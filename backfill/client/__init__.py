"""Putting jobs in: the asyncio client, the blocking client and the module-level default client."""

from backfill.client.async_client import BackfillClient, Enqueue
from backfill.client.sync_client import SyncBackfillClient

__all__ = ["BackfillClient", "Enqueue", "SyncBackfillClient"]
