"""``backfill run``: the WorkerRunner configured from the environment — lanes, retry policies, DLQ, metrics.

``backfill worker`` runs one core worker from command-line options; ``backfill run`` is what a container runs:
every setting comes from the environment (and ``.env``), see ``.env.example`` and docs/reference/environment.md.
"""

from __future__ import annotations

import argparse
import os

from backfill.cli.common import Commands
from backfill.core import ConfigurationError
from backfill.exit_codes import EXIT_OK
from backfill.logs import configure_logging, get_logger
from backfill.runner.supervised import watch_supervisor
from backfill.runner.supervisor import supervise
from backfill.runner.worker_runner import WorkerRunner


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "run",
        help="run the lanes, retry policies, dead-letter queue and metrics, configured from the environment",
        description=(
            "Run a WorkerRunner configured from the environment (and .env): FAST_QUEUE_CONCURRENCY, "
            "BULK_QUEUE_CONCURRENCY, BACKFILL_LANES, BACKFILL_TASK_MODULES, BACKFILL_METRICS_PORT and the rest "
            "listed in .env.example. SIGTERM or SIGINT stops it gracefully; a second one stops running jobs."
        ),
    )
    parser.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="MODULE",
        help="module whose tasks to run (repeatable; added to BACKFILL_TASK_MODULES)",
    )
    parser.add_argument("--once", action="store_true", help="run what is runnable now in every lane, then exit")
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        metavar="N",
        help="worker processes under one supervisor, for CPU-bound tasks (default: BACKFILL_PROCESSES, 1)",
    )
    # Also accepted after the command, as before; SUPPRESS keeps it from clobbering `backfill --env-file F run`.
    parser.add_argument(
        "--env-file",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="file of variables read under the environment (default .env, if there is one); must exist",
    )
    # A signal during start-up (imports, connecting, migrating) stops the runner cleanly instead of killing it.
    parser.set_defaults(handler=_run_command, records_stop_signals=True)


def _log_like_the_runner() -> None:
    """Settings that failed to load configured no logging: use BACKFILL_LOG_FORMAT (from the environment
    alone, it may be the bad value) so that the error line that follows has the format every other line of
    ``backfill run`` has — JSON when asked, or when stderr is not a terminal."""
    try:
        configure_logging(fmt=os.environ.get("BACKFILL_LOG_FORMAT") or "auto", root=True)
    except ConfigurationError:
        configure_logging(fmt="auto", root=True)


async def _run_command(args: argparse.Namespace) -> int:
    watch_supervisor()  # a worker process of a supervisor stops when the supervisor is gone
    try:
        # main() has read the file into the environment already (and refused a missing one).
        runner = WorkerRunner.from_env(env_file=args.env_file or ".env", extra_task_modules=tuple(args.tasks))
    except ConfigurationError:
        _log_like_the_runner()
        raise
    processes = runner.settings.processes if args.processes is None else args.processes
    if processes < 1:
        raise ConfigurationError(f"--processes: must be a positive integer, got {processes}")
    if processes > 1 and not args.once:
        # The runner built above checked the configuration (and imported the tasks) once, here, so that a
        # mistake is one error and exit 2 rather than N processes failing; each process builds its own.
        # Its environment already holds the .env file's variables: main() loaded them.
        return await supervise(runner.settings, processes=processes, extra_task_modules=tuple(args.tasks))
    summary = await (runner.run_once(handle_signals=True) if args.once else runner.serve(handle_signals=True))
    # On stderr as fields (one JSON line in JSON mode), and on stdout for scripts, as before.
    get_logger("backfill.cli").info(
        "backfill run finished",
        succeeded=summary.succeeded,
        failed=summary.failed,
        permanently_failed=summary.permanently_failed,
        interrupted=summary.interrupted,
    )
    print(
        f"backfill run: succeeded={summary.succeeded} failed={summary.failed} "
        f"permanently_failed={summary.permanently_failed} interrupted={summary.interrupted}",
        flush=True,
    )
    return EXIT_OK
