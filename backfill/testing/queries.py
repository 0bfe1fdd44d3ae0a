"""The statements backfill.testing runs against a test's database (``sql/testing.sql``)."""

from __future__ import annotations

from backfill.core.extension import Statements


class WaitingJobsSql(Statements, file=("backfill.testing.sql", "testing.sql")):
    """The clock's moves of waiting jobs, and the count of those a run left behind."""

    advance_jobs: str
    next_run_at: str
    jobs_left: str
