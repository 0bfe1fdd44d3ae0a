"""``backfill add`` and ``backfill jobs list|show|complete|fail|reschedule|remove`` (and ``result``, results.py).

Acting commands (complete, fail, reschedule, remove) use Graphile's SQL functions through WorkerUtils, so a job
locked by a worker is left alone; ids that matched nothing are named on stderr, and when nothing at all
matched the command exits 3. complete, fail and reschedule take ids, filters or --all and work in batches:
they live in job_actions.py.
"""

from __future__ import annotations

import argparse
import json
import os

from backfill.cli.common import (
    Commands,
    add_database_options,
    add_json_option,
    add_run_at_options,
    open_utils,
    parse_payload,
    run_at_from,
    schema_of,
)
from backfill.cli.control import register_job_commands
from backfill.cli.job_actions import register_actions
from backfill.cli.output import NONE, cell, note, plural, print_json, table, timestamp
from backfill.cli.results import register_result_command
from backfill.client.async_client import BackfillClient
from backfill.core import ConfigurationError, JobInfo, JobKeyMode, JobSlice, JobState
from backfill.core.extension import database_url_from_env
from backfill.exit_codes import EXIT_NOT_FOUND, EXIT_OK
from backfill.jsonable import to_jsonable
from backfill.lanes.lane import Lane, lane_of
from backfill.priorities import Priority


def register(commands: Commands) -> None:
    add = commands.add_parser(
        "add",
        help="enqueue a job",
        description=(
            "Enqueue one job as BackfillClient.enqueue does, and print it: options left out take the task's "
            "defaults as its runners published them (lane, priority, queue, retry policy, attempts), then "
            "BACKFILL_DEFAULT_RETRY_POLICY and the Bulk lane."
        ),
    )
    add.add_argument("task", metavar="TASK", help="task identifier")
    add.add_argument("payload", metavar="PAYLOAD_JSON", nargs="?", help="a JSON object or array (default {})")
    add.add_argument("--queue", "-q", metavar="Q", help="named queue: its jobs run one at a time, in order")
    add_run_at_options(add)
    add.add_argument(
        "--priority",
        metavar="N|NAME",
        help=f"lower runs first: a number, or one of {', '.join(p.name for p in Priority)} (default: the task's, "
        "else BULK_DEFAULT); negative priorities run in the Fast lane",
    )
    add.add_argument("--lane", metavar="LANE", help="a custom lane (BACKFILL_LANES on runners); default: the task's")
    add.add_argument(
        "--retry-policy",
        metavar="POLICY",
        help="fast, aggressive, conservative, default or graphile (default: the task's, else "
        "BACKFILL_DEFAULT_RETRY_POLICY)",
    )
    add.add_argument("--max-attempts", type=int, metavar="N", help="attempts before failing for good (default 25)")
    add.add_argument("--key", metavar="K", help="job key: a job with the same key is updated instead of added")
    add.add_argument(
        "--key-mode",
        choices=[mode.value for mode in JobKeyMode],
        help="what an existing keyed job gets (default replace)",
    )
    add.add_argument("--flag", action="append", metavar="F", help="a flag workers can be told to skip (repeatable)")
    add.add_argument(
        "--keep-result",
        type=float,
        metavar="SECONDS",
        help="keep the job's outcome and return value this long after it ends (see: backfill jobs result)",
    )
    _common(add, _add_command)

    jobs = commands.add_parser(
        "jobs", help="list, inspect and act on jobs", description="List, inspect and act on jobs."
    )
    actions = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="jobs matching every filter, by id", description="List jobs by id.")
    listing.add_argument("--task", metavar="T", help="task identifier")
    listing.add_argument("--queue", metavar="Q", help="queue name")
    listing.add_argument("--state", choices=[state.value for state in JobState], help="derived state (see docs)")
    listing.add_argument("--locked-by", metavar="W", help="worker id holding the job")
    listing.add_argument("--key", metavar="K", help="job key")
    listing.add_argument("--lane", metavar="LANE", help="fast, bulk or a custom lane: the jobs that lane's workers run")
    listing.add_argument(
        "--exception-type", metavar="E", help="the exception that failed the last attempt (KeyError, myapp.Error)"
    )
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N jobs (default 100)")
    listing.add_argument("--after", type=int, metavar="ID", help="only ids above ID: the next page")
    _common(listing, _list_command)

    show = actions.add_parser("show", help="one job, payload included", description="Show one job and its payload.")
    show.add_argument("id", type=int, metavar="ID")
    _common(show, _show_command)

    register_actions(actions)  # complete, fail, reschedule: by ids, filters or --all, in batches
    register_job_commands(actions)  # cancel, cancellations (control.py)
    register_result_command(actions)  # result (results.py)

    remove = actions.add_parser(
        "remove",
        help="remove the job with a key",
        description="Remove the job with this key (a running one is disarmed).",
    )
    remove.add_argument("key", metavar="KEY")
    _common(remove, _remove_command)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_database_options(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handler)


async def _add_command(args: argparse.Namespace) -> int:
    if args.key_mode is not None and args.key is None:
        raise ConfigurationError("--key-mode needs --key")
    payload = parse_payload(args.payload)
    run_at = run_at_from(args)
    priority = parse_priority(args.priority)
    default_policy = os.environ.get("BACKFILL_DEFAULT_RETRY_POLICY") or "default"
    client = BackfillClient(
        database_url_from_env(args.database_url), schema=schema_of(args), default_retry_policy=default_policy
    )
    async with client:
        job = await client.enqueue(
            args.task,
            payload,
            queue=args.queue,
            lane=args.lane,
            run_at=run_at,
            max_attempts=args.max_attempts,
            job_key=args.key,
            job_key_mode=args.key_mode,
            priority=priority,
            retry_policy=args.retry_policy,
            flags=args.flag,
            keep_result=args.keep_result,
        )
    if args.json:
        print_json(job)
    else:
        queue = job.queue_name or NONE
        print(
            f"added job {job.id}: task {job.task_identifier}, lane {lane_of(job.priority, job.flags)}, "
            f"priority {job.priority}, queue {queue}, run at {timestamp(job.run_at)}"
        )
    return EXIT_OK


def parse_priority(text: str | None) -> int | None:
    """``--priority``: a smallint, or a :class:`Priority` name in any case."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(Priority[text.strip().upper()])
    except KeyError:
        names = ", ".join(p.name for p in Priority)
        raise ConfigurationError(f"--priority: {text!r} is neither a number nor one of {names}") from None


_LIST_HEADERS = (
    "ID",
    "TASK",
    "LANE",
    "QUEUE",
    "STATE",
    "PRIORITY",
    "ATTEMPTS",
    "RUN_AT",
    "LOCKED_BY",
    "KEY",
    "EXCEPTION",
    "LAST_ERROR",
)


async def _list_command(args: argparse.Namespace) -> int:
    job_slice = _lane_slice(args.lane)
    async with open_utils(args) as utils:
        found = await utils.list_jobs(
            task=args.task,
            queue=args.queue,
            state=args.state,
            locked_by=args.locked_by,
            key=args.key,
            limit=args.limit,
            after_id=args.after,
            exception_type=args.exception_type,
            min_priority=None if job_slice is None else job_slice.min_priority,
            max_priority=None if job_slice is None else job_slice.max_priority,
            required_flags=job_slice.required_flags if job_slice is not None and job_slice.required_flags else None,
            forbidden_flags=job_slice.forbidden_flags if job_slice is not None and job_slice.forbidden_flags else None,
        )
    if args.json:
        print_json([{**to_jsonable(job), "lane": lane_of(job.priority, job.flags)} for job in found])
        return EXIT_OK
    rows = [
        (
            job.id,
            job.task_identifier,
            lane_of(job.priority, job.flags),
            job.queue_name,
            job.state,
            job.priority,
            f"{job.attempts}/{job.max_attempts}",
            job.run_at,
            job.locked_by,
            job.key,
            job.exception_type,
            job.last_error,
        )
        for job in found
    ]
    print(table(_LIST_HEADERS, rows, right=("ID", "PRIORITY", "ATTEMPTS")))
    if len(found) == args.limit:
        note(f"{plural(len(found), 'job')} shown; the next page: --after {found[-1].id}")
    return EXIT_OK


def _lane_slice(name: str | None) -> JobSlice | None:
    """``--lane``: the slice of the jobs table that lane's workers fetch."""
    if name is None:
        return None
    try:
        return Lane(name, 1).job_slice
    except ConfigurationError as error:
        raise ConfigurationError(f"--lane: {str(error).removeprefix('lane name: ')}") from None


async def _show_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        job = await utils.get_job(args.id)
    if args.json:
        print_json(job)
    elif job is not None:
        print(_describe(job))
    if job is None:
        note(f"no job with id {args.id}")
        return EXIT_NOT_FOUND
    return EXIT_OK


def _describe(job: JobInfo) -> str:
    fields: list[tuple[str, object]] = [
        ("id", job.id),
        ("task", job.task_identifier),
        ("queue", job.queue_name),
        ("state", job.state),
        ("priority", job.priority),
        ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("run_at", job.run_at),
        ("created_at", job.created_at),
        ("updated_at", job.updated_at),
        ("key", job.key),
        ("locked_by", job.locked_by),
        ("locked_at", job.locked_at),
        ("flags", job.flags),
        ("revision", job.revision),
        ("exception", job.exception_type),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {cell(value)}" for name, value in fields]
    # The whole error and the whole payload: this is the one place a person asked to read them.
    error_lines = (job.last_error or NONE).splitlines() or [NONE]
    lines.append(f"{'last_error'.ljust(width)}  {error_lines[0]}")
    lines.extend(" " * (width + 2) + line for line in error_lines[1:])
    lines.append("payload:")
    lines.append(json.dumps(job.payload, indent=2, ensure_ascii=False))
    return "\n".join(lines)


async def _remove_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        job = await utils.remove_job(args.key)
    if args.json:
        print_json(job)
    if job is None:
        note(f"no job with key {args.key!r}")
        return EXIT_NOT_FOUND
    if not args.json:
        if job.locked_by is not None:
            # remove_job cannot delete a job under its worker: it cleared the key and spent its attempts.
            print(f"job {job.id} is running on {job.locked_by}: its key was cleared and it will not run again")
        else:
            print(f"removed job {job.id} (task {job.task_identifier})")
    return EXIT_OK
