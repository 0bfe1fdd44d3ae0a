"""Triage of the dead-letter queue from Python: look, requeue what a fix makes runnable, delete what is stale.

The first step fills the queue with dead jobs (only so that there is something to triage); ``triage`` is the
part to adapt. Each step has a CLI twin (``backfill dlq ...``, see docs/cli.md).

Run it with ``DATABASE_URL`` set: ``python -m examples.dlq_triage``. See docs/how-to/dlq-triage.md.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import asyncpg

import backfill
from backfill.dlq import DeadLetterFilter, DeadLetterQueue, EntryState
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings

SMTP_RELAY_FIXED = False  # flipped once "the incident is over", so that requeued emails succeed
DELIVERED: list[str] = []


@backfill.task("triage.send_email")
async def send_email(payload: dict[str, str]) -> None:
    if payload["to"].endswith("@unknown.example"):
        raise RuntimeError("550 mailbox unavailable")
    if not SMTP_RELAY_FIXED:
        raise TimeoutError("timeout talking to smtp.example.com:587")
    DELIVERED.append(payload["to"])


@backfill.task("triage.resize_image")
async def resize_image(payload: dict[str, str]) -> None:
    raise ValueError(f"{payload['path']}: not a PNG file")


async def make_dead_jobs(dsn: str) -> None:
    """Enqueue jobs that fail on their only attempt, and run them: the runner moves them to the DLQ."""
    async with backfill.BackfillClient(dsn) as client:
        await client.migrate()  # everything the client and the runner use, before the first enqueue
        for n in range(3):
            await client.enqueue("triage.send_email", {"to": f"user{n}@example.com"}, max_attempts=1)
        await client.enqueue("triage.send_email", {"to": "ghost@unknown.example"}, max_attempts=1)
        await client.enqueue("triage.resize_image", {"path": "avatars/7.jpg"}, max_attempts=1)
    await WorkerRunner(BackfillSettings.load()).run_once()


async def triage(dlq: DeadLetterQueue) -> None:
    # 1. The big picture: `backfill dlq stats`.
    stats = await dlq.stats()
    print(f"{stats.dead} dead, {stats.requeued} requeued")
    for row in stats.by_task:
        print(f"  task {row.value}: {row.count}")
    for row in stats.top_errors:
        print(f"  error {row.value!r}: {row.count}")

    # 2. The entries behind one error, a page at a time: `backfill dlq list --task ... --error ...`.
    timeouts = DeadLetterFilter(task="triage.send_email", error="timeout", state=EntryState.DEAD)
    cursor: str | None = None
    while True:
        page = await dlq.list(timeouts, limit=2, after=cursor)
        for entry in page.entries:
            print(f"  entry {entry.id}: to={entry.payload['to']} failed at {entry.failed_at:%H:%M:%S}")
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    # 3. Requeue them once the cause is fixed: a dry run first says what would happen and changes nothing.
    preview = await dlq.requeue(filter=timeouts, dry_run=True)
    print(f"dry run: would requeue entries {[r.entry_id for r in preview.requeued]}")
    done = await dlq.requeue(filter=timeouts, note="SMTP relay fixed (INC-1234)")
    for requeued in done.requeued:
        print(f"requeued entry {requeued.entry_id} as job {requeued.job_id}")

    # 4. Entries nobody will retry: leave a note for the next person, delete the stale ones.
    for entry in (await dlq.list(DeadLetterFilter(error="550 mailbox"))).entries:
        await dlq.annotate(entry.id, "address does not exist; support told the customer")
    stale = DeadLetterFilter(until=datetime.now(UTC) - timedelta(days=30))
    print(f"dry run: would delete entries {list((await dlq.delete(filter=stale, dry_run=True)).deleted)}")
    print(f"deleted entries {list((await dlq.delete(filter=stale)).deleted)}")


async def backdate(dsn: str, task: str, *, days: int) -> None:
    """Not triage: make the entries of ``task`` look ``days`` old, so that step 4 has something to delete."""
    table = BackfillSettings.load().schema_name.qualify("backfill_dlq")
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            f"update {table} set failed_at = failed_at - make_interval(days => $2) where task_identifier = $1",
            task,
            days,
        )
    finally:
        await connection.close()


async def main() -> int:
    global SMTP_RELAY_FIXED  # noqa: PLW0603 - the example's stand-in for "the incident was fixed"
    dsn = os.environ["DATABASE_URL"]
    await make_dead_jobs(dsn)

    async with DeadLetterQueue(dsn) as dlq:
        # Pretend the image job died two months ago, so that there is something old to delete.
        await backdate(dsn, "triage.resize_image", days=60)
        SMTP_RELAY_FIXED = True
        await triage(dlq)

        # A worker runs the requeued jobs; an entry whose job succeeds is deleted, one that dies again is dead
        # again, with the new errors appended.
        await WorkerRunner(BackfillSettings.load()).run_once()
        emails = (await dlq.list(DeadLetterFilter(task="triage.send_email"))).entries
        images = (await dlq.list(DeadLetterFilter(task="triage.resize_image"))).entries
    print(f"delivered after the fix: {', '.join(sorted(DELIVERED))}")
    for entry in emails:
        print(f"left: entry {entry.id} ({entry.task_identifier}) {entry.last_error!r}, notes: {entry.notes!r}")
    return 0 if len(DELIVERED) == 3 and len(emails) == 1 and not images else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
