"""The admin API's own statements (``sql/admin.sql``)."""

from __future__ import annotations

from backfill.core.extension import JobSql, Statements
from backfill.lanes.lane import LaneSql


class AdminSql(Statements, file=("backfill.admin.sql", "admin.sql")):
    """The overview's figures, a job's error history, cron, the audit trail (see admin.sql)."""

    includes = (LaneSql, JobSql)
    ready_sample: str
    scheduled_sample: str
    throughput_minutes: str
    worker_registry: str
    dead_letters: str
    database_now: str
    without_jit: str
    lanes_seen: str
    job_errors: str
    known_crontabs: str
    record_audit: str
    audit_page: str
