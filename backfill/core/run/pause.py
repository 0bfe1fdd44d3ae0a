"""What a worker must not start for now: an operator's pause, applied to the fetch and to the local queue.

The core does not store pauses or decide them; whoever runs the worker (backfill's runner reads them from the
database, see :mod:`backfill.control`) hands it a :class:`FetchPause` with :meth:`Worker.set_fetch_pause`. The
worker then claims none of that work: paused tasks leave the claim's task list, paused named queues leave its
queue locks (a variant of the claim that only runs while a queue is paused, so an unpaused fetch costs what it
always did), and a paused worker claims nothing. Jobs already claimed and not started are handed back, so
paused work stays queued in the database; running jobs finish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from backfill.core.jobs import Job


@dataclass(frozen=True, slots=True)
class FetchPause:
    """Work a worker leaves queued: all of it (``everything``), or the jobs of these tasks and named queues."""

    everything: bool = False
    tasks: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, everything: bool = False, tasks: Iterable[str] = (), queues: Iterable[str] = ()) -> FetchPause:
        return cls(everything, frozenset(tasks), frozenset(queues))

    @property
    def active(self) -> bool:
        """Whether anything is paused at all."""
        return self.everything or bool(self.tasks) or bool(self.queues)

    def holds(self, job: Job) -> bool:
        """Whether ``job`` is paused work."""
        return (
            self.everything
            or job.task_identifier in self.tasks
            or (job.queue_name is not None and job.queue_name in self.queues)
        )


NO_PAUSE = FetchPause()
