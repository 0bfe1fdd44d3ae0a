"""Enqueue a few jobs for ``examples.tasks``: ``python -m examples.enqueue`` (needs DATABASE_URL).

Shows the two ways to enqueue: on a pool, and on your own connection inside your own transaction.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

import backfill


async def main() -> None:
    dsn = os.environ["DATABASE_URL"]
    async with asyncpg.create_pool(dsn, min_size=1, max_size=2) as pool:
        await backfill.migrate(pool)
        job = await backfill.add_job(
            pool, "examples.send_welcome_email", {"to": "ada@example.com", "name": "Ada"}, priority=-5
        )
        print(f"enqueued job {job.id} ({job.task_identifier})")

        # Inside a transaction: the job exists only if the transaction commits.
        async with pool.acquire() as connection, connection.transaction():
            await backfill.add_job(
                connection, "examples.send_welcome_email", {"to": "alan@example.com", "name": "Alan"}
            )
        print("enqueued a second job inside a committed transaction")


if __name__ == "__main__":
    asyncio.run(main())
