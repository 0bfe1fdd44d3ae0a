"""``backfill pause|resume|pauses`` and ``backfill jobs cancel|cancellations``: the operator's controls.

Pauses and cancellations are written to backfill's own tables and announced to the runners (see
backfill/control). A pause names exactly one lane, queue or task; ``resume`` exits 3 when it was not paused.
``jobs cancel`` takes ids or the filters of the other job actions, walked a page of ids at a time: each page is
one transaction, and its jobs are answered one by one (cancelled, requested from the worker running it,
already cancelled, not found, refused). It exits 0 when at least one job was cancelled or its cancellation
requested, 3 when none was.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from backfill.cli.bulk import Noun, batch_size_of, confirmed, needs_confirmation, walk
from backfill.cli.common import Commands, add_database_options, add_json_option, open_connection, open_utils, schema_of
from backfill.cli.job_actions import choice_options, id_pages, selection
from backfill.cli.output import age, note, print_json, table
from backfill.control import (
    CancelOutcome,
    CancelResult,
    CancelState,
    cancel_jobs,
    cancellations,
    list_pauses,
    pause,
    resume,
)
from backfill.core import ConfigurationError
from backfill.exit_codes import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK

_JOB = Noun("job", "jobs")
_ACTED = (CancelOutcome.CANCELLED, CancelOutcome.REQUESTED)


def register(commands: Commands) -> None:
    paused = commands.add_parser(
        "pause",
        help="pause a lane, queue or task fleet-wide",
        description="Pause a lane, named queue or task: no backfill runner starts its jobs until it is resumed "
        "(running jobs finish; the work stays queued). Node workers do not honour pauses.",
    )
    _target_options(paused)
    paused.add_argument("--reason", metavar="TEXT", help="why, shown with the pause")
    paused.add_argument("--by", metavar="WHO", help="who pauses (default: user@host)")
    _common(paused, _pause_command)

    resumed = commands.add_parser(
        "resume", help="lift a pause", description="Lift the pause of a lane, named queue or task (exit 3: none)."
    )
    _target_options(resumed)
    _common(resumed, _resume_command)

    listing = commands.add_parser("pauses", help="the pauses in force", description="List the pauses in force.")
    _common(listing, _pauses_command)


def register_job_commands(actions: Commands) -> None:
    cancel = actions.add_parser(
        "cancel",
        help="cancel queued or running jobs",
        description="Cancel jobs: a queued job is deleted and never runs; a running one is cancelled by the "
        "backfill worker running it. Never retried, never dead-lettered; recorded with who and when.",
    )
    choice_options(cancel, "cancel")
    cancel.add_argument("--reason", metavar="TEXT", help="why, recorded with each cancellation")
    cancel.add_argument("--by", metavar="WHO", help="who cancels (default: user@host)")
    _common(cancel, _cancel_command)

    listing = actions.add_parser(
        "cancellations", help="recent cancellations", description="List cancellations, newest first."
    )
    listing.add_argument("ids", type=int, nargs="*", metavar="ID", help="only these job ids")
    listing.add_argument("--state", choices=[state.value for state in CancelState])
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50, at most 1000)")
    _common(listing, _cancellations_command)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_database_options(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handler)


def _target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--lane", metavar="L", help="a lane: fast, bulk or a custom lane")
    target.add_argument("--queue", metavar="Q", help="a named queue")
    target.add_argument("--task", metavar="T", help="a task identifier")


def _who(args: argparse.Namespace) -> str:
    if args.by is not None:
        if not args.by.strip():
            raise ConfigurationError("--by: must not be empty")
        return str(args.by)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's random user)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _pause_command(args: argparse.Namespace) -> int:
    async with open_connection(args) as connection:
        made = await pause(
            connection,
            schema_of(args),
            lane=args.lane,
            queue=args.queue,
            task=args.task,
            by=_who(args),
            reason=args.reason,
        )
    if args.json:
        print_json(made)
    else:
        print(f"paused {made.kind.value} {made.name}: runners start none of its jobs until `backfill resume`")
    return EXIT_OK


async def _resume_command(args: argparse.Namespace) -> int:
    async with open_connection(args) as connection:
        lifted = await resume(connection, schema_of(args), lane=args.lane, queue=args.queue, task=args.task)
    if args.json:
        print_json(lifted)
    elif lifted is not None:
        print(f"resumed {lifted.kind.value} {lifted.name} (paused by {lifted.paused_by})")
    if lifted is None:
        note("it was not paused: nothing to resume")
        return EXIT_NOT_FOUND
    return EXIT_OK


async def _pauses_command(args: argparse.Namespace) -> int:
    async with open_connection(args) as connection:
        pauses = await list_pauses(connection, schema_of(args))
    if args.json:
        print_json(pauses)
        return EXIT_OK
    if not pauses:
        note("nothing is paused")
        return EXIT_OK
    now = datetime.now(UTC)
    print(
        table(
            ("KIND", "NAME", "PAUSED_BY", "SINCE", "REASON"),
            [(p.kind.value, p.name, p.paused_by, age(p.paused_at, now), p.reason) for p in pauses],
        )
    )
    return EXIT_OK


async def _cancel_command(args: argparse.Namespace) -> int:
    which = selection(args, "cancel")
    if which.ids is not None:  # each id answered once, in ascending order, however often it was given
        which = dataclasses.replace(which, ids=sorted(set(which.ids)))
    batch_size = batch_size_of(args)
    who = _who(args)
    ask = needs_confirmation(args, "cancel")  # before connecting: a refusal never touches the database
    async with open_utils(args) as utils, open_connection(args) as connection:
        if args.dry_run:
            count = len(set(which.ids)) if which.ids is not None else await utils.count_jobs(which)
            if args.json:
                print_json({"dry_run": True, "count": count})
            else:
                print(f"dry run: nothing was changed\nwould cancel {_JOB.count(count)} (running ones by their worker)")
            return EXIT_OK if count else EXIT_NOT_FOUND
        total = len(set(which.ids)) if which.ids is not None else await utils.count_jobs(which)
        if ask and not confirmed(f"cancel {_JOB.count(total)}?"):
            return EXIT_FAILURE

        async def pages() -> AsyncIterator[list[CancelResult]]:
            async for ids in id_pages(utils, which, batch_size):
                yield await cancel_jobs(connection, schema_of(args), ids, by=who, reason=args.reason)

        def failed(done: list[list[CancelResult]]) -> None:
            _report(args, [answer for page in done for answer in page])

        done = await walk(pages(), total=total, noun=_JOB, size=len, on_failure=failed)
    answers = [answer for page in done for answer in page]
    _report(args, answers)
    return EXIT_OK if any(answer.outcome in _ACTED for answer in answers) else EXIT_NOT_FOUND


def _report(args: argparse.Namespace, answers: list[CancelResult]) -> None:
    if args.json:
        print_json(answers)
        return
    if answers:
        print(
            table(
                ("JOB", "OUTCOME", "WORKER", "DETAIL"),
                [(a.job_id, a.outcome.value, a.worker_id, a.detail) for a in answers],
                right=("JOB",),
            )
        )
    counts = {outcome: sum(1 for a in answers if a.outcome is outcome) for outcome in CancelOutcome}
    said = ", ".join(f"{count} {outcome.value.replace('_', ' ')}" for outcome, count in counts.items() if count)
    note(said or "no job matched")


async def _cancellations_command(args: argparse.Namespace) -> int:
    async with open_connection(args) as connection:
        found = await cancellations(
            connection, schema_of(args), job_ids=args.ids or None, state=args.state, limit=args.limit
        )
    if args.json:
        print_json(found)
    elif found:
        now = datetime.now(UTC)
        rows = [
            (
                c.job_id,
                c.task_identifier,
                c.state.value,
                c.requested_by,
                age(c.requested_at, now),
                c.worker_id,
                c.reason,
            )
            for c in found
        ]
        print(table(("JOB", "TASK", "STATE", "BY", "REQUESTED", "WORKER", "REASON"), rows, right=("JOB",)))
    if not found:
        note("no cancellation found")
        return EXIT_NOT_FOUND if args.ids else EXIT_OK
    return EXIT_OK
