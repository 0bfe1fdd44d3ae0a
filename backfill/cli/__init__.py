"""The ``backfill`` command line (also ``python -m backfill``): ``main`` assembles the commands and runs one.

One module per group of commands (worker.py: migrate, worker, demo; run.py: run, the WorkerRunner; jobs.py:
add and jobs …; admin.py: stats, queues, workers, cleanup, sweep; dlq.py: dlq list, show, requeue, delete,
stats, note), each registering its parsers with a ``handler`` coroutine that returns an exit code. The exit
codes are in exit_codes.py and docs/cli.md; errors map to them here, once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import asyncpg

from backfill.cli import admin, dlq, jobs, run, worker
from backfill.cli.exit_codes import (
    EXIT_FAILURE,
    EXIT_INCOMPATIBLE_SCHEMA,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
)
from backfill.cli.worker import load_tasks
from backfill.core.errors import BackfillError, ConfigurationError, DatabaseError, IncompatibleSchemaError, JobSpecError
from backfill.core.signals import record_stop_signals

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INCOMPATIBLE_SCHEMA",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
    "load_tasks",
    "main",
]

logger = logging.getLogger("backfill.cli")

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backfill",
        description="PostgreSQL job queue compatible with Graphile Worker.",
        epilog=(
            "DATABASE_URL and GRAPHILE_WORKER_SCHEMA are read from the environment unless given as options. "
            "Exit codes: 0 success, 1 runtime failure, 2 bad usage, 3 nothing matched, 57 incompatible schema."
        ),
    )
    parser.add_argument("--log-level", default=os.environ.get("BACKFILL_LOG_LEVEL", "INFO"), help="default: INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker.register(commands)
    run.register(commands)
    jobs.register(commands)
    admin.register(commands)
    dlq.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 itself on bad usage, as argparse does
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler = args.handler
    if getattr(args, "records_stop_signals", False):
        record_stop_signals()
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (BackfillError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return _report(error)


def _report(error: BaseException) -> int:
    """Say what went wrong on stderr, and the exit code it means."""
    if isinstance(error, IncompatibleSchemaError):
        logger.error("%s", error)
        return EXIT_INCOMPATIBLE_SCHEMA
    if isinstance(error, (ConfigurationError, JobSpecError)):
        print(f"backfill: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(error, DatabaseError):
        # The message carries asyncpg's; no traceback for an unreachable database. DSNs in messages are redacted.
        print(f"backfill: error: {error}", file=sys.stderr)
    elif isinstance(error, BackfillError):
        logger.error("%s", error, exc_info=error.__cause__)
    else:
        # A database error a core function let through unwrapped: still a runtime failure, not a traceback.
        print(f"backfill: error: {type(error).__name__}: {error}", file=sys.stderr)
    return EXIT_FAILURE
