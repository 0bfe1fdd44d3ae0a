"""``backfill jobs result ID``: how a job ended, its return value and timings; ``--wait`` blocks until it ends.

The exit code says how it ended, for scripts: 0 succeeded, 4 failed for good or cancelled, 5 not ended yet (or
not within ``--timeout``), 3 no outcome is kept for the job (it keeps none, or its retention passed).
"""

from __future__ import annotations

import argparse
import json

from backfill.cli.common import Commands, add_database_options, add_json_option, schema_of
from backfill.cli.output import NONE, cell, note, print_json
from backfill.client.async_client import BackfillClient
from backfill.core import ConfigurationError, ResultTimeoutError, ResultUnavailableError
from backfill.core.extension import database_url_from_env
from backfill.exit_codes import EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_PENDING
from backfill.results.models import JobOutcome


def register_result_command(actions: Commands) -> None:
    result = actions.add_parser(
        "result",
        help="how a job ended, and its return value",
        description=(
            "Show a job's outcome: succeeded (with its return value), failed for good or cancelled, with its "
            "attempts and timings. Kept only for jobs enqueued with keep_result or of tasks that declare it. "
            "Exit code: 0 succeeded, 4 failed or cancelled, 5 not ended (yet), 3 no outcome is kept."
        ),
    )
    result.add_argument("id", type=int, metavar="ID")
    result.add_argument("--wait", action="store_true", help="block until the job ends (woken by the worker)")
    result.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit code 5)"
    )
    add_database_options(result)
    add_json_option(result)
    result.set_defaults(handler=_result_command)


async def _result_command(args: argparse.Namespace) -> int:
    if args.timeout is not None and not args.wait:
        raise ConfigurationError("--timeout needs --wait")
    if args.timeout is not None and not args.timeout >= 0:
        raise ConfigurationError(f"--timeout: must be zero or more seconds, got {args.timeout:g}")
    async with BackfillClient(database_url_from_env(args.database_url), schema=schema_of(args)) as client:
        try:
            if args.wait:
                outcome: JobOutcome | None = await client.wait(args.id, timeout=args.timeout)
            else:
                outcome = await client.result(args.id)
        except ResultUnavailableError as error:
            note(str(error))
            return EXIT_NOT_FOUND
        except ResultTimeoutError as error:
            note(str(error))
            return EXIT_PENDING
    if outcome is None:
        if args.json:
            print_json({"job_id": args.id, "state": "pending"})
        else:
            print(f"job {args.id} has not ended: it is queued or running (--wait to block until it ends)")
        return EXIT_PENDING
    if args.json:
        print_json(outcome.as_dict())
    else:
        print(describe(outcome))
    return EXIT_OK if outcome.succeeded else EXIT_JOB_FAILED


def describe(outcome: JobOutcome) -> str:
    """The outcome as aligned lines, the return value last, as indented JSON."""
    fields: list[tuple[str, object]] = [
        ("job", outcome.job_id),
        ("task", outcome.task_identifier),
        ("state", outcome.state.value),
        ("attempts", f"{outcome.attempts}/{outcome.max_attempts}"),
        ("queue", outcome.queue_name),
        ("key", outcome.job_key),
        ("created_at", outcome.created_at),
        ("started_at", outcome.started_at),
        ("finished_at", outcome.finished_at),
        ("duration", None if outcome.duration is None else f"{outcome.duration:.3f}s"),
        ("expires_at", outcome.expires_at),
        ("error", outcome.error),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {cell(value)}" for name, value in fields]
    if not outcome.kept:
        lines.append("(not kept: what the job's row says; it goes with the row)")
    if outcome.succeeded:
        lines.append("value:")
        lines.append(json.dumps(outcome.value, indent=2, ensure_ascii=False) if outcome.value is not None else NONE)
    return "\n".join(lines)
