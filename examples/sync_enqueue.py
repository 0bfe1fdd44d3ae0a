"""Enqueueing from synchronous code (a Django or Flask view, a script), with no event loop in sight.

* ``SyncBackfillClient`` blocks until the job is written. On its own it runs an asyncpg pool on a private
  thread; any number of threads may share one client.
* Given ``connection=`` (a DB-API connection: psycopg, Django's ``django.db.connection``), it writes the job
  on that connection, inside your transaction: the job exists only if the transaction commits.

Run it with ``DATABASE_URL`` set: ``python -m examples.sync_enqueue``. The transactional part needs psycopg 3.
At the end a worker pass runs the jobs, to show which ones exist.
"""

from __future__ import annotations

import asyncio
import os

import backfill
from backfill.client import sync_client
from backfill.runner import WorkerRunner

RECEIPTS: list[int] = []


@backfill.task("shop.send_receipt")
def send_receipt(payload: dict[str, int]) -> None:
    RECEIPTS.append(payload["order"])


def enqueue_in_transactions(dsn: str, client: backfill.SyncBackfillClient) -> list[int]:
    """The orders whose receipt job was committed."""
    try:
        import psycopg
    except ImportError:
        print("psycopg is not installed: skipped enqueueing inside a transaction")
        return []
    with psycopg.connect(dsn) as db:
        # Committed: the order's receipt job commits with it.
        with db.transaction():
            job = client.enqueue_fast("shop.send_receipt", {"order": 2}, connection=db)
            print(f"order 2: job {job.id} enqueued inside a transaction that commits")
        # Rolled back (the order failed a check): its job never existed, and no worker ever saw it.
        try:
            with db.transaction():
                job = client.enqueue_fast("shop.send_receipt", {"order": 3}, connection=db)
                print(f"order 3: job {job.id} enqueued inside a transaction that rolls back")
                raise ValueError("payment refused")
        except ValueError:
            pass
    return [2]


def main() -> int:
    dsn = os.environ["DATABASE_URL"]
    # A real service installs the schema at deploy time (`backfill migrate`); the example does it here.
    asyncio.run(migrate(dsn))

    with backfill.SyncBackfillClient(dsn) as client:  # closes its pool and thread on exit
        job = client.enqueue_fast("shop.send_receipt", {"order": 1})
        print(f"order 1: job {job.id} enqueued at priority {job.priority}")
        committed = [1, *enqueue_in_transactions(dsn, client)]

    # The module-level functions do the same with a client built from DATABASE_URL on first use.
    job = sync_client.enqueue_bulk("shop.send_receipt", {"order": 4})
    print(f"order 4: job {job.id} enqueued by backfill.client.sync_client.enqueue_bulk")

    summary = asyncio.run(WorkerRunner.from_env().run_once())
    print(f"worker pass: succeeded={summary.succeeded}; receipts sent for orders {sorted(RECEIPTS)}")
    return 0 if sorted(RECEIPTS) == [*committed, 4] else 1


async def migrate(dsn: str) -> None:
    # The client's migrate, not the core's WorkerUtils.migrate: it also installs the task catalog the client
    # reads when it enqueues.
    async with backfill.BackfillClient(dsn) as client:
        await client.migrate()


if __name__ == "__main__":
    raise SystemExit(main())
