"""The job the current asyncio task is running, for log processors and metrics that need to know it.

The worker sets it around every attempt (a context variable: each runner task has its own), so a log line
written anywhere inside an attempt, by the handler or by the worker recording its outcome, can be tagged with
the job's id, task and attempt without every call site passing them. ``None`` outside an attempt.
"""

from __future__ import annotations

from contextvars import ContextVar

from backfill.core.jobs import Job

current_job: ContextVar[Job | None] = ContextVar("backfill_current_job", default=None)
