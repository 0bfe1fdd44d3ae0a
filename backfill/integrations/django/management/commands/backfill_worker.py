"""``manage.py backfill_worker``: run the Django tasks of backfill backends until SIGTERM, like ``backfill run``.

SIGTERM or SIGINT stops it gracefully: no new job starts, running ones get ``BACKFILL_SHUTDOWN_GRACE_SECONDS``
(30) to finish, and it exits 0; a second signal cancels them. ``--once`` runs what is runnable now and exits.
"""

from __future__ import annotations

import asyncio
import logging
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from backfill.core import BackfillError, ConfigurationError, IncompatibleSchemaError
from backfill.core.extension import record_stop_signals
from backfill.exit_codes import EXIT_FAILURE, EXIT_INCOMPATIBLE_SCHEMA, EXIT_USAGE
from backfill.integrations.django.worker import build_runner

logger = logging.getLogger("backfill.runner")


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type information here
    help = (
        "Run backfill workers for the tasks of the BackfillBackend backends in settings.TASKS, configured by "
        "backfill's environment variables (lanes, concurrency, logs, metrics). SIGTERM or SIGINT stops it "
        "gracefully; a second one stops running jobs."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="run what is runnable now in every lane, then exit")
        parser.add_argument(
            "--backend",
            action="append",
            dest="backends",
            default=[],
            metavar="ALIAS",
            help="a settings.TASKS alias whose tasks to run (repeatable; default: every BackfillBackend)",
        )
        parser.add_argument(
            "--env-file", default=".env", metavar="FILE", help="file of BACKFILL_* variables under the environment"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        record_stop_signals()  # a signal while tasks are imported or the database is reached stops cleanly
        try:
            runner = build_runner(options["backends"], env_file=options["env_file"])
        except ConfigurationError as error:
            raise CommandError(f"configuration error: {error}", returncode=EXIT_USAGE) from None
        # The connections this thread opened (system checks, imports) serve no job: jobs run in other threads.
        connections.close_all()
        if not options["once"]:
            code = runner.run()  # handles SIGTERM/SIGINT and maps errors to exit codes, as `backfill run`
            if code:
                raise SystemExit(code)
            return
        try:
            summary = asyncio.run(runner.run_once(handle_signals=True))
        except IncompatibleSchemaError as error:
            logger.error("%s", error)
            raise SystemExit(EXIT_INCOMPATIBLE_SCHEMA) from None
        except BackfillError as error:
            logger.error("worker runner stopped: %s", error, exc_info=error.__cause__)
            raise SystemExit(EXIT_FAILURE) from None
        self.stdout.write(
            f"backfill_worker: succeeded={summary.succeeded} failed={summary.failed} "
            f"permanently_failed={summary.permanently_failed} interrupted={summary.interrupted}"
        )
