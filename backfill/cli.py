"""The ``backfill`` command line (also ``python -m backfill``).

Exit codes scripts can rely on: 0 success; 1 a runtime failure (database unreachable, worker crashed);
2 bad usage or configuration; 57 the database holds a breaking schema revision newer than this backfill
(the code Node's graphile-worker uses for the same refusal).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

import asyncpg

from backfill.core.db import database_url_from_env, redact_dsn
from backfill.core.errors import BackfillError, ConfigurationError, IncompatibleSchemaError
from backfill.core.migrate import migrate
from backfill.core.options import WorkerOptions
from backfill.core.schema import SchemaName
from backfill.core.tasks import TaskRegistry, default_registry
from backfill.core.worker import Worker

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INCOMPATIBLE_SCHEMA = 57

logger = logging.getLogger("backfill.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backfill",
        description="PostgreSQL job queue compatible with Graphile Worker.",
        epilog="DATABASE_URL and GRAPHILE_WORKER_SCHEMA are read from the environment unless given as options.",
    )
    parser.add_argument("--log-level", default=os.environ.get("BACKFILL_LOG_LEVEL", "INFO"), help="default: INFO")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    migrate_parser = commands.add_parser("migrate", help="install or upgrade the Graphile schema to revision 20")
    _add_database_options(migrate_parser)

    worker_parser = commands.add_parser("worker", help="run the tasks of one or more modules")
    _add_database_options(worker_parser)
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

    demo_parser = commands.add_parser(
        "demo", help="enqueue sample jobs and run a worker on them (embedded PostgreSQL if DATABASE_URL is unset)"
    )
    demo_parser.add_argument("--jobs", type=int, default=200, help="how many sample jobs (default 200)")
    return parser


def _add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", "-c", default=None, help="default: $DATABASE_URL")
    parser.add_argument("--schema", "-s", default=None, help="default: $GRAPHILE_WORKER_SCHEMA or graphile_worker")


def load_tasks(modules: Sequence[str]) -> TaskRegistry:
    """Import ``modules`` and collect the tasks they define (via ``@backfill.task`` or a TaskRegistry)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `backfill worker --tasks app.tasks` run from the project root
    collected = TaskRegistry()
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise ConfigurationError(f"--tasks {name}: cannot import module: {error}") from error
        for definition in default_registry.from_modules([name]):
            collected.register(definition.identifier, definition.handler, payload_model=definition.payload_model)
        for value in vars(module).values():
            if isinstance(value, TaskRegistry) and value is not default_registry:
                for definition in value:
                    collected.register(
                        definition.identifier, definition.handler, payload_model=definition.payload_model
                    )
    if len(collected) == 0:
        raise ConfigurationError(
            f"--tasks {', '.join(modules)}: no tasks found (decorate handlers with @backfill.task)"
        )
    return collected


async def _migrate_command(args: argparse.Namespace) -> int:
    dsn = database_url_from_env(args.database_url)
    schema = SchemaName.from_env(args.schema)
    try:
        connection = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as error:
        logger.error("cannot connect to %s: %s", redact_dsn(dsn), error)
        return EXIT_FAILURE
    try:
        report = await migrate(connection, schema)
    finally:
        await connection.close()
    if report.applied:
        print(f"schema {schema}: revision {report.from_revision or 0} -> {report.to_revision}")
    else:
        print(f"schema {schema}: already at revision {report.to_revision}")
    return EXIT_OK


async def _worker_command(args: argparse.Namespace) -> int:
    dsn = database_url_from_env(args.database_url)
    registry = load_tasks(args.tasks)
    options = WorkerOptions(
        schema=SchemaName.from_env(args.schema),
        concurrency=args.concurrency,
        poll_interval=args.poll_interval,
        prepared_statements=not args.no_prepared_statements,
        forbidden_flags=tuple(args.forbidden_flag),
        shutdown_grace_period=args.shutdown_grace,
        handle_signals=True,
    )
    worker = Worker(dsn, tasks=registry, options=options)
    logger.info("worker %s on %s running %s", worker.worker_id, redact_dsn(dsn), ", ".join(registry.identifiers))
    summary = await (worker.run_once() if args.once else worker.run())
    print(
        f"succeeded={summary.succeeded} failed={summary.failed} permanently_failed={summary.permanently_failed} "
        f"returned={summary.returned} interrupted={summary.interrupted}",
        file=sys.stderr,
    )
    return EXIT_OK


async def _demo_command(args: argparse.Namespace) -> int:
    from backfill.demo import run_demo  # imports pgserver lazily: only the demo needs it

    return await run_demo(jobs=args.jobs)


_COMMANDS = {"migrate": _migrate_command, "worker": _worker_command, "demo": _demo_command}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except IncompatibleSchemaError as error:
        logger.error("%s", error)
        return EXIT_INCOMPATIBLE_SCHEMA
    except ConfigurationError as error:
        print(f"backfill: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BackfillError as error:
        logger.error("%s", error, exc_info=error.__cause__)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
