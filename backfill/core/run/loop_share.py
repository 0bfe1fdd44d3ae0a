"""Workers sharing one event loop: letting the urgent one's pickups through while the others are busy.

Lanes give each worker its own slots, not its own loop. A runner of a busy worker takes up to eight jobs
before it yields the loop, and twenty-four of them fill a loop turn with about two hundred jobs; a job of
another worker needs five or six turns to be picked up (the notification, the fetcher waking, the claim's
reply, the runner starting), so with no-op jobs draining at full speed beside it, a Fast-lane job waited
about 10 ms at the median and 29 ms at p99 instead of 1.6 and 3.3 ms.

One worker *leads* (the runner's Fast lane): it marks the loop :attr:`LoopShare.urgent` from the moment it
hears of new jobs or starts a fetch until its runners have been handed what the fetch claimed. The others
*follow*: while the loop is urgent their runners yield after every job instead of every eight, so each turn
is short and the pickup's turns follow each other quickly; a follower decoding a large claim (2-5 ms for 500
rows) makes way every 64 rows the same way. Nothing waits: the followers keep running jobs, one
per turn each, and no lock or event is involved, only a flag read per job.
"""

from __future__ import annotations

import asyncio


class LoopShare:
    """What the workers of one process sharing a loop know of each other. See the module docstring."""

    __slots__ = ("urgent",)

    def __init__(self) -> None:
        self.urgent = False

    def hurry(self) -> None:
        """The leading worker has something to pick up: followers yield after every job from now on."""
        self.urgent = True

    def calm_soon(self) -> None:
        """The leading worker's runners have their jobs: back to normal once they had a turn to start them."""
        try:
            # Scheduled behind the runners the fetch just created, so followers stay brief until they ran.
            asyncio.get_running_loop().call_soon(self._calm)
        except RuntimeError:
            self.urgent = False

    def _calm(self) -> None:
        self.urgent = False
