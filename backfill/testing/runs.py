"""Running the jobs queued in a test's database to completion, in-process: :func:`run_jobs`.

It is :meth:`WorkerRunner.run_once <backfill.runner.WorkerRunner.run_once>`, so a test runs what production
runs: every lane, the retry policies, the tasks' defaults for jobs a handler enqueues, the dead-letter move of
jobs that failed for good. Jobs due now are run, and those they enqueue for now; jobs due later are left (see
:class:`~backfill.testing.QueueClock` to make them due). The report is told by the workers' events and counted by
the runner (see :mod:`backfill.testing.report`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import asyncpg

from backfill.core import Hooks, SchemaName, TaskRegistry
from backfill.runner import WorkerRunner
from backfill.settings import BackfillSettings
from backfill.tasks.retry_policies import ErrorRules
from backfill.testing.queries import WaitingJobsSql
from backfill.testing.report import OutcomeLog, RunReport


class RunJobs(Protocol):
    """:func:`run_jobs` bound to a database, as the ``backfill_run_jobs`` fixture gives it."""

    async def __call__(
        self,
        *,
        tasks: TaskRegistry | None = None,
        hooks: Hooks | None = None,
        error_rules: ErrorRules | None = None,
        **settings: Any,
    ) -> RunReport: ...


async def run_jobs(
    database_url: str,
    *,
    schema: SchemaName | str | None = None,
    tasks: TaskRegistry | None = None,
    hooks: Hooks | None = None,
    error_rules: ErrorRules | None = None,
    **settings: Any,
) -> RunReport:
    """Run every job of ``database_url`` that is due now until none is left, and report what happened.

    ``tasks``: the handlers (default: those registered with ``@backfill.task``). ``hooks`` and ``error_rules``
    as for :class:`~backfill.runner.WorkerRunner` (``hooks`` is copied, never changed). ``settings``: values of
    :class:`~backfill.settings.BackfillSettings` by field name (``lanes="exports=1"``, ``dlq_enabled=False``,
    ``fast_queue_concurrency=1``), over the environment's (a ``.env`` file is not read), as a worker would read
    them. ``schema`` defaults to ``GRAPHILE_WORKER_SCHEMA``, else ``graphile_worker``.

    A failed job does not make this raise: it is in the report (``report.raise_for_failures()`` raises).
    """
    schema_name = SchemaName.coerce(schema)
    config = BackfillSettings.load(env_file=None, database_url=database_url, schema_name=schema_name, **settings)
    outcomes = OutcomeLog()
    runner = WorkerRunner(
        config,
        on_worker_events=lambda events, lane: outcomes.attach(events),
        tasks=tasks,
        hooks=dataclasses.replace(hooks) if hooks is not None else None,  # the runner adds its own hooks to it
        error_rules=error_rules,
        crontab=(),  # a run does not schedule cron (run_once never does); () keeps BACKFILL_CRONTAB unread
    )
    summary = await runner.run_once()
    connection = await asyncpg.connect(database_url)
    try:
        left = await connection.fetchrow(WaitingJobsSql.for_schema(schema_name).jobs_left)
    finally:
        await connection.close()
    assert left is not None  # an aggregate returns one row
    return outcomes.report(summary, left_due=left["due"], left_scheduled=left["scheduled"])
