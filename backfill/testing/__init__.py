"""backfill.testing: test code that uses backfill, against a real PostgreSQL or without one.

* :class:`ThrowawayDatabases` — a migrated database per test, on the server of a URL or on an embedded one;
* :func:`run_jobs` — run what is queued now to completion in-process, and get a :class:`RunReport`;
* :class:`QueueClock` — make waiting jobs due as if time had passed (a retry's backoff, a delayed job);
* :func:`job_context` — a :class:`~backfill.core.JobContext` for calling a handler without a database.

The pytest plugin :mod:`backfill.testing.plugin` (registered by entry point as ``backfill``) puts them in
fixtures: ``backfill_database_url``, ``backfill_client``, ``backfill_run_jobs``, ``backfill_clock``,
``backfill_job_context``. See ``docs/how-to/testing.md``.

pytest imports this package at start-up in every project that has backfill installed, so the names are imported
on first use (PEP 562), as in :mod:`backfill`: nothing heavy is loaded until a test asks for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backfill.testing.clock import QueueClock
    from backfill.testing.context import AddedJob, NoDatabaseError, RecordingJobContext, job_context
    from backfill.testing.databases import ThrowawayDatabase, ThrowawayDatabases
    from backfill.testing.report import JobFailure, JobsFailed, RunReport
    from backfill.testing.runs import RunJobs, run_jobs
    from backfill.testing.server import DatabaseServer

_EXPORTS: dict[str, tuple[str, ...]] = {
    "backfill.testing.clock": ("QueueClock",),
    "backfill.testing.context": ("AddedJob", "NoDatabaseError", "RecordingJobContext", "job_context"),
    "backfill.testing.databases": ("ThrowawayDatabase", "ThrowawayDatabases"),
    "backfill.testing.report": ("JobFailure", "JobsFailed", "RunReport"),
    "backfill.testing.runs": ("RunJobs", "run_jobs"),
    "backfill.testing.server": ("DatabaseServer",),
}
_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AddedJob",
    "DatabaseServer",
    "JobFailure",
    "JobsFailed",
    "NoDatabaseError",
    "QueueClock",
    "RecordingJobContext",
    "RunJobs",
    "RunReport",
    "ThrowawayDatabase",
    "ThrowawayDatabases",
    "job_context",
    "run_jobs",
]

# Hidden from type checkers, which see the TYPE_CHECKING imports instead.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups do not come back here
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
