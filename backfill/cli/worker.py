"""``backfill migrate``, ``backfill worker`` and ``backfill demo``: install the schema and run tasks."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from backfill.cli.common import Commands, add_database_options, open_connection
from backfill.core import CronItem, SchemaName, Worker, WorkerOptions, load_crontab_file
from backfill.core.extension import database_url_from_env, redact_dsn
from backfill.exit_codes import EXIT_OK
from backfill.migrations import migrate_all
from backfill.tasks.modules import load_tasks

logger = logging.getLogger("backfill.cli")


def register(commands: Commands) -> None:
    migrate_parser = commands.add_parser(
        "migrate",
        help="install or upgrade the Graphile schema to revision 20, and backfill's own tables",
        description="Install or upgrade the Graphile schema to revision 20, then backfill's own tables beside it.",
    )
    add_database_options(migrate_parser)
    migrate_parser.set_defaults(handler=_migrate_command)

    worker_parser = commands.add_parser(
        "worker", help="run the tasks of one or more modules", description="Run the tasks of one or more modules."
    )
    add_database_options(worker_parser)
    worker_parser.add_argument(
        "--tasks",
        action="append",
        required=True,
        metavar="MODULE",
        help="module to import; every task it defines is run (repeatable)",
    )
    worker_parser.add_argument("--concurrency", "-j", type=int, default=10, help="jobs run at once (default 10)")
    worker_parser.add_argument("--once", action="store_true", help="run what is runnable now, then exit 0")
    worker_parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls (default 2)")
    worker_parser.add_argument(
        "--no-prepared-statements", action="store_true", help="for PgBouncer in transaction pooling mode"
    )
    worker_parser.add_argument(
        "--forbidden-flag", action="append", default=[], metavar="FLAG", help="skip jobs with this flag (repeatable)"
    )
    worker_parser.add_argument(
        "--shutdown-grace", type=float, default=30.0, help="seconds running jobs get after SIGTERM (default 30)"
    )
    worker_parser.add_argument(
        "--crontab",
        metavar="FILE",
        default=None,
        help=f"Graphile crontab file to schedule from (default: ./{DEFAULT_CRONTAB} when it exists; see docs/cron.md)",
    )
    # A signal during start-up (connecting, migrating) stops the worker cleanly instead of killing it.
    worker_parser.set_defaults(handler=_worker_command, records_stop_signals=True)

    demo_parser = commands.add_parser(
        "demo", help="enqueue sample jobs and run a worker on them (embedded PostgreSQL if DATABASE_URL is unset)"
    )
    demo_parser.add_argument("--jobs", type=int, default=200, help="how many sample jobs (default 200)")
    demo_parser.set_defaults(handler=_demo_command)


DEFAULT_CRONTAB = "crontab"


async def _migrate_command(args: argparse.Namespace) -> int:
    schema = SchemaName.from_env(args.schema)
    async with open_connection(args) as connection:
        # Graphile's schema, then backfill's own tables beside it: the worker registry and error history (core
        # line), the dead-letter table (dlq line) and the task defaults catalog (tasks line).
        report, own = await migrate_all(connection, schema)
    if report.applied:
        print(f"schema {schema}: revision {report.from_revision or 0} -> {report.to_revision}")
    else:
        print(f"schema {schema}: already at revision {report.to_revision}")
    if own:
        print(f"schema {schema}: backfill's own migrations applied: {', '.join(own)}")
    return EXIT_OK


async def _worker_command(args: argparse.Namespace) -> int:
    dsn = database_url_from_env(args.database_url)
    registry = load_tasks(args.tasks, source="--tasks")
    options = WorkerOptions(
        schema=SchemaName.from_env(args.schema),
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        prepared_statements=not args.no_prepared_statements,
        forbidden_flags=tuple(args.forbidden_flag),
        shutdown_grace_period=args.shutdown_grace,
        handle_signals=True,
    )
    worker = Worker(dsn, tasks=registry, options=options, crontab=_crontab_items(args.crontab))
    logger.info("worker %s on %s running %s", worker.worker_id, redact_dsn(dsn), ", ".join(registry.identifiers))
    summary = await (worker.run_once() if args.once else worker.run())
    print(
        f"succeeded={summary.succeeded} failed={summary.failed} permanently_failed={summary.permanently_failed} "
        f"returned={summary.returned} interrupted={summary.interrupted} timed_out={summary.timed_out} "
        f"skipped={summary.skipped} lost_leases={summary.lost_leases}",
        file=sys.stderr,
    )
    return EXIT_OK


def _crontab_items(path: str | None) -> list[CronItem]:
    """The crontab to run: ``--crontab FILE``, else ``./crontab`` when present (as Node's CLI does), else none.
    A malformed line raises CrontabError (exit 2) naming the file, the line and the reason."""
    if path is not None:
        return load_crontab_file(path)
    if os.path.isfile(DEFAULT_CRONTAB):
        logger.info("using the crontab file ./%s", DEFAULT_CRONTAB)
        return load_crontab_file(DEFAULT_CRONTAB)
    return []


async def _demo_command(args: argparse.Namespace) -> int:
    from backfill.demo import run_demo  # imports the embedded PostgreSQL lazily: only the demo needs it

    return await run_demo(jobs=args.jobs)
