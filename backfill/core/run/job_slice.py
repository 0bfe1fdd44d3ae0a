"""A slice of the jobs table: the jobs one worker fetches, beyond "the tasks it runs".

Several workers share one table by taking disjoint slices of it, each with its own concurrency: that is what
the layer's lanes are (a lane *has* a slice). The slice is fixed for a worker's life and becomes part of its
fetch statement, so a worker claims only its own jobs and never competes with another slice for a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backfill.core.checks import check_int
from backfill.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class JobSlice:
    """Priority bounds (inclusive, ``None``: unbounded) and flags: a job carrying any of ``forbidden_flags`` is
    outside the slice, and when ``required_flags`` is given a job must carry at least one of them.

    Validated at construction; the flags are kept as tuples (a list, a generator are accepted)."""

    min_priority: int | None = None
    max_priority: int | None = None
    forbidden_flags: Sequence[str] = ()
    required_flags: Sequence[str] = ()

    def __post_init__(self) -> None:
        # The messages name WorkerOptions' arguments, which are these fields' names.
        for name in ("forbidden_flags", "required_flags"):
            given = getattr(self, name)
            try:
                # A tuple first: checking a generator's items would use it up and leave the slice without flags.
                flags = None if isinstance(given, str) else tuple(given)
            except TypeError:
                flags = None
            if flags is None or not all(isinstance(f, str) for f in flags):
                raise ConfigurationError(f"{name} must be a list of strings")
            object.__setattr__(self, name, flags)
        for name in ("min_priority", "max_priority"):
            check_int(name, getattr(self, name), must="an integer or None", optional=True)
        if self.min_priority is not None and self.max_priority is not None and self.min_priority > self.max_priority:
            raise ConfigurationError(
                f"min_priority ({self.min_priority}) must not be above max_priority ({self.max_priority})"
            )
