"""The worker's claims, on the connection it fetches with: claim jobs, hand unstarted ones back, release orphans.

One pinned connection carries every statement that takes or gives back a claim, so the fetcher's statements
run one at a time; that is what lets the orphan release compute "what we own" without a claim in flight.

Claims are committed without waiting for the WAL flush: that wait (an fsync, ~0.5-1 ms here) sat on every
job's schedule-to-start path. It is safe: a claim lost in a database crash leaves the job available, so it runs
again and this worker's late result is fenced out (at-least-once holds, and the duplicate is one the crash
excuses). Results keep synchronous commits (the completer's connection): losing a completion would re-run a
finished job without any crash of ours to excuse it.

Payloads are decoded here, on the event loop: CPython's JSON decoder holds the GIL, so a thread would stall
the loop just as long. What can be avoided is a batch of large payloads decoded in one go (ten 1.2 MB
payloads: 70-250 ms with nothing else running): once ``_DECODE_TURN_CHARS`` of payload text have been
decoded, the loop gets a turn before the next job, so a stall lasts one large payload's decode at most.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from typing import Any

import asyncpg

from backfill.core.jobs import CLAIMED_JOB_COLUMNS, Job, claimed_job
from backfill.core.pinned import PinnedConnection
from backfill.core.run.loop_share import LoopShare
from backfill.core.run.pause import NO_PAUSE, FetchPause
from backfill.core.run.queries import WorkerQueries, fetch_filter_arguments

# Payload text decoded between two loop turns: 256 KiB of JSON decodes in about 1.5-5 ms here, so small payloads
# (the usual hundreds of bytes) never pay for a turn, and the loop waits at most that long plus one payload.
_DECODE_TURN_CHARS = 256 * 1024
# Rows decoded between two looks at the shared loop's urgency (see Claims' follows): decoding a 500-row claim
# takes 2-5 ms here, which a Fast-lane pickup waiting behind it would otherwise wait out whole.
_URGENCY_CHECK_ROWS = 64


class Claims:
    """Claims for one worker id over one pinned connection; a statement that fails discards the connection."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        queries: WorkerQueries,
        worker_id: str,
        identifiers: Sequence[str],
        *,
        forbidden_flags: Sequence[str] = (),
        required_flags: Sequence[str] = (),
        follows: LoopShare | None = None,
    ) -> None:
        self._connection = PinnedConnection(pool, setup=queries.claim_session)
        self._follows = follows  # while it is urgent, decoding a claim makes way for the leading worker
        self._queries = queries
        self._worker_id = worker_id
        self._identifiers = list(identifiers)
        # The flag arrays follow worker id, identifiers and limit (fetch.sql numbers them).
        self._flag_arguments = fetch_filter_arguments(forbidden_flags, required_flags)
        self._task_names: dict[int, str] = {}  # task_id -> identifier, for the tasks we run
        # What the claim and its check run with now (set_pause sets them): the statements, the identifiers, and
        # the arguments after the limit (flag arrays, then paused queue names while any are paused); ``paused``:
        # nothing may be claimed (the worker, or every task of it, is paused).
        self._fetch_jobs, self._runnable_exists = queries.fetch_jobs, queries.runnable_exists
        self._claimed_identifiers: list[str] = []
        self._tail: list[Any] = []
        self.paused = False
        self.set_pause(NO_PAUSE)

    def set_pause(self, pause: FetchPause) -> None:
        """Claim none of the work ``pause`` holds from the next claim on (see backfill.core.run.pause)."""
        self._claimed_identifiers = [i for i in self._identifiers if i not in pause.tasks]
        self.paused = pause.everything or not self._claimed_identifiers
        queries = self._queries
        if pause.queues:
            self._fetch_jobs = queries.fetch_jobs_pausing_queues
            self._runnable_exists = queries.runnable_exists_pausing_queues
            self._tail = [*self._flag_arguments, sorted(pause.queues)]
        else:
            self._fetch_jobs, self._runnable_exists = queries.fetch_jobs, queries.runnable_exists
            self._tail = list(self._flag_arguments)

    async def load_task_names(self, connection: Any) -> None:
        rows = await connection.fetch(self._queries.task_ids, self._identifiers)
        self._task_names = {row["id"]: row["identifier"] for row in rows}

    async def claim(self, count: int) -> list[Job]:
        """Lock up to ``count`` runnable jobs of our tasks for this worker (one per named queue)."""
        if self.paused:
            return []
        connection = await self._connection.get()
        try:
            rows = await connection.fetch(
                self._fetch_jobs, self._worker_id, self._claimed_identifiers, count, *self._tail
            )
            if any(row["task_id"] not in self._task_names for row in rows):
                # A task row re-created under a new id (GC_TASK_IDENTIFIERS cleanup, say): the claim found it
                # by identifier, so learn the new id.
                await self.load_task_names(connection)
        except BaseException:
            await self._connection.discard()
            raise
        return await self._decode(rows)

    async def _decode(self, rows: Sequence[Any]) -> list[Job]:
        names = self._task_names
        follows = self._follows
        # By position when the rows have the claim's columns (always, unless fetch.sql and CLAIMED_JOB_COLUMNS
        # disagree: then by name, slower but never shifted).
        by_position = not rows or tuple(rows[0].keys()) == CLAIMED_JOB_COLUMNS
        jobs: list[Job] = []
        since_turn = 0
        cancelled = False
        for row in rows:
            if by_position:
                jobs.append(claimed_job(row, names))
            else:
                jobs.append(Job.from_record(row, task_identifier=names[row["task_id"]]))
            payload = row["payload"]
            if type(payload) is str:
                since_turn += len(payload)
            if follows is not None and follows.urgent and len(jobs) % _URGENCY_CHECK_ROWS == 0:
                since_turn = _DECODE_TURN_CHARS  # make way now, as for a large payload
            if since_turn >= _DECODE_TURN_CHARS and not cancelled:
                since_turn = 0
                try:
                    # Three turns: a timer or a socket that fell due during the decode runs its callback on the
                    # first, behind our own wake-up; that callback resolves a future, whose waiting task is
                    # scheduled behind our second wake-up. With two turns the waiting task ran only after the
                    # next payload (the loop stalled for two payloads, not one: measured 35-45 ms against
                    # 15-19 ms for one 1.2 MB payload).
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    # The jobs are claimed: decode the rest and hand them over, so that the caller returns them
                    # unstarted, and deliver the cancellation at its next await.
                    cancelled = True
        if cancelled:
            task = asyncio.current_task()
            if task is not None:
                task.cancel()
        return jobs

    async def runnable_exists(self) -> bool:
        """Whether a job this worker may claim is runnable now, locks aside: the check an empty claim needs
        before it may be read as "nothing left" (a concurrent fetch briefly row-locks what it looks at)."""
        if self.paused:
            return False
        connection = await self._connection.get()
        try:
            return bool(
                await connection.fetchval(
                    self._runnable_exists, self._worker_id, self._claimed_identifiers, 1, *self._tail
                )
            )
        except BaseException:
            await self._connection.discard()
            raise

    async def hand_back(self, jobs: Sequence[Job]) -> int:
        """Unlock claimed jobs that never started, refunding their attempt; how many were still ours."""
        if not jobs:
            return 0
        connection = await self._connection.get()
        try:
            rows = await connection.fetch(
                self._queries.return_jobs, [job.id for job in jobs], self._worker_id, [job.locked_at for job in jobs]
            )
        except BaseException:
            await self._connection.discard()
            raise
        return len(rows)

    async def release_orphans(self, owned: Collection[int]) -> tuple[list[int], int]:
        """Unlock rows locked by us whose id is not in ``owned``; the jobs released and the queue locks freed."""
        connection = await self._connection.get()
        try:
            row = await connection.fetchrow(self._queries.release_orphans, self._worker_id, list(owned))
        except BaseException:
            await self._connection.discard()
            raise
        assert row is not None
        return list(row["jobs"]), int(row["queues"])

    async def close(self) -> None:
        await self._connection.close()
