"""The ``backfill`` command line (also ``python -m backfill``): ``main`` assembles the commands and runs one.

One module per group of commands (worker.py: migrate, worker, demo; run.py: run, the WorkerRunner; jobs.py:
add and jobs …; admin.py: stats, queues, workers, cleanup, sweep; control.py: pause, resume,
pauses, jobs cancel, jobs cancellations; dlq.py: dlq list, show, requeue, delete,
stats, note), each registering its parsers with a ``handler`` coroutine that returns an exit code. The exit
codes are in backfill/exit_codes.py and docs/cli.md; errors map to them here, once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from backfill.cli import admin, control, dlq, jobs, run, worker
from backfill.core import BackfillError, ConfigurationError, DatabaseError, IncompatibleSchemaError, JobSpecError
from backfill.core.extension import record_stop_signals, scrub
from backfill.exit_codes import (
    EXIT_FAILURE,
    EXIT_INCOMPATIBLE_SCHEMA,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
)
from backfill.logs import configure_cli_logging, json_logging_active, parse_log_level

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INCOMPATIBLE_SCHEMA",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "build_parser",
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
    parser.add_argument("--log-level", default=None, help="default: $BACKFILL_LOG_LEVEL or INFO")
    parser.add_argument(
        "--env-file",
        default=None,
        metavar="FILE",
        help="variables read under the environment, for every command (default: .env, if there is one)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    worker.register(commands)
    run.register(commands)
    jobs.register(commands)
    admin.register(commands)
    control.register(commands)
    dlq.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 itself on bad usage, as argparse does
    try:
        read_env_file(args.env_file)
        configure_cli_logging(_log_level(args.log_level))
    except ConfigurationError as error:
        return _report(error)
    handler: Handler = args.handler
    if getattr(args, "records_stop_signals", False):
        record_stop_signals()
    try:
        return asyncio.run(handler(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # every failure becomes a message and an exit code, never a raw traceback
        return _report(error)


def read_env_file(path: str | None) -> None:
    """Every command reads ``.env`` (or ``--env-file``) under the environment, as ``backfill run`` does: its
    variables fill in what the environment leaves unset. A file named with ``--env-file`` must exist; a
    missing default ``.env`` is fine."""
    from dotenv import load_dotenv  # pydantic-settings' own .env reader, so both agree on the syntax

    if path is None:
        if Path(".env").is_file():
            load_dotenv(".env", override=False, encoding="utf-8")
        return
    if not Path(path).exists() or Path(path).is_dir():  # /dev/null is fine: "no variables from a file"
        raise ConfigurationError(f"--env-file: {path} does not exist (or is a directory)")
    load_dotenv(path, override=False, encoding="utf-8")


def _log_level(option: str | None) -> int:
    """``--log-level``, else ``BACKFILL_LOG_LEVEL``, else INFO; a bad value is an error naming its source."""
    source, value = ("--log-level", option) if option is not None else ("BACKFILL_LOG_LEVEL", None)
    value = value if value is not None else os.environ.get("BACKFILL_LOG_LEVEL") or "INFO"
    try:
        return parse_log_level(value)
    except ConfigurationError as error:
        raise ConfigurationError(f"{source}: {error}") from None


def _report(error: BaseException) -> int:
    """Say what went wrong on stderr, and the exit code it means. No message shows a password: each is
    scrubbed of every password this process was given, as log lines are."""
    if isinstance(error, IncompatibleSchemaError):
        logger.error("%s", scrub(str(error)))
        return EXIT_INCOMPATIBLE_SCHEMA
    if isinstance(error, (ConfigurationError, JobSpecError)):
        _say(str(error))
        return EXIT_USAGE
    if isinstance(error, DatabaseError):
        # The message carries asyncpg's; no traceback for an unreachable database.
        _say(str(error))
    elif isinstance(error, BackfillError):
        logger.error("%s", scrub(str(error)), exc_info=error.__cause__)
    elif isinstance(error, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
        # A database error a core function let through unwrapped: still a runtime failure, not a traceback.
        _say(f"{type(error).__name__}: {error}")
    else:
        # A bug: its traceback helps, and goes through the scrubbing log handler.
        logger.error("unexpected %s: %s", type(error).__name__, scrub(str(error)), exc_info=error)
    return EXIT_FAILURE


def _say(message: str) -> None:
    """One error line on stderr: JSON when ``backfill run`` logs JSON (every stderr line is then JSON)."""
    if json_logging_active():
        logger.error("%s", scrub(message))
    else:
        print(f"backfill: error: {scrub(message)}", file=sys.stderr, flush=True)
