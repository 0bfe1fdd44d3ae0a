"""An in-memory claim source: the ``ClaimSource`` protocol of ``backfill.core.run.local_queue`` over a list of
available jobs and a set of rows "locked by us", kept the way the claim connection keeps them in the database
(a claim locks, a hand-back or an orphan release unlocks). For tests of the local queue and the runners without
a database, and for ``bench/tools/runner_loop.py``; the SQL behind the protocol is tested against a real
database in ``tests/integration``."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence

from backfill.core.jobs import Job


class MemoryClaims:
    """The ``ClaimSource`` protocol in memory. ``failing_hand_backs`` hand-backs raise before one works."""

    def __init__(self, available: Iterable[Job] = ()) -> None:
        self.available = list(available)
        self.locked: set[int] = set()
        self.claim_sizes: list[int] = []
        self.handed_back: list[int] = []
        self.failing_hand_backs = 0
        self.owned_at_release: set[int] | None = None
        self.release_gate: asyncio.Event | None = None  # when set, release_orphans waits for it

    async def claim(self, count: int) -> list[Job]:
        self.claim_sizes.append(count)
        taken, self.available = self.available[:count], self.available[count:]
        self.locked.update(job.id for job in taken)
        return taken

    async def hand_back(self, jobs: Sequence[Job]) -> int:
        if self.failing_hand_backs:
            self.failing_hand_backs -= 1
            raise ConnectionError("connection lost")
        ours = [job.id for job in jobs if job.id in self.locked]
        self.locked.difference_update(ours)
        self.handed_back.extend(ours)
        return len(ours)

    async def release_orphans(self, owned: Collection[int]) -> tuple[list[int], int]:
        self.owned_at_release = set(owned)
        if self.release_gate is not None:
            await self.release_gate.wait()
        released = sorted(self.locked - self.owned_at_release)
        self.locked.difference_update(released)
        return released, 0

    async def runnable_exists(self) -> bool:
        return bool(self.available)
