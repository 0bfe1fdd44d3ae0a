"""``backfill jobs complete|fail|reschedule``: act on jobs chosen by id, by filter, or ``--all``, in batches.

Each batch of ids goes to Graphile's own SQL function (through WorkerUtils) in a statement, and so a
transaction, of its own; the function re-checks every lock, so a job locked by a worker is left alone however
it was chosen. Filters are walked a page of ids at a time by ascending id (backfill/core/admin/job_selection.py).
What the bulk commands share (confirmation, progress, summary) is in bulk.py.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable

from backfill.cli.bulk import (
    Noun,
    add_bulk_options,
    batch_size_of,
    confirmed,
    needs_confirmation,
    some,
    stopped,
    summary,
    walk,
)
from backfill.cli.common import (
    Commands,
    add_database_options,
    add_json_option,
    add_run_at_options,
    open_utils,
    run_at_from,
)
from backfill.cli.output import note, print_json
from backfill.core import ConfigurationError, Job, JobState, WorkerUtils
from backfill.core.extension import JobFilter
from backfill.dlq.batches import chunks
from backfill.exit_codes import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK

_JOB = Noun("job", "jobs")
Action = Callable[[WorkerUtils, list[int]], Awaitable[list[Job]]]
Batch = tuple[list[int], list[Job]]  # the ids asked for, and the jobs the function acted on


def register_actions(actions: Commands) -> None:
    complete = actions.add_parser("complete", help="delete jobs as done", description="Mark jobs done (deletes them).")
    choice_options(complete, "complete")
    _common(complete, _complete_command)

    fail = actions.add_parser(
        "fail", help="fail jobs for good", description="Fail jobs permanently: attempts = max_attempts."
    )
    choice_options(fail, "fail")
    fail.add_argument("--reason", required=True, metavar="TEXT", help="stored as the job's last_error")
    _common(fail, _fail_command)

    reschedule = actions.add_parser(
        "reschedule", help="change when and how jobs run", description="Change the given fields of jobs."
    )
    choice_options(reschedule, "reschedule")
    add_run_at_options(reschedule)
    reschedule.add_argument("--priority", type=int, metavar="N")
    reschedule.add_argument("--attempts", type=int, metavar="N", help="e.g. 0 to give a failed job a fresh start")
    reschedule.add_argument("--max-attempts", type=int, metavar="N")
    _common(reschedule, _reschedule_command)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_database_options(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handler)


def choice_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """Ids, or the filters (task, queue, state) with the bulk options: how every job action chooses."""
    parser.add_argument("ids", type=int, nargs="*", metavar="ID", help="job ids (or use filters, or --all)")
    parser.add_argument("--task", metavar="T", help="task identifier")
    parser.add_argument("--queue", metavar="Q", help="queue name")
    parser.add_argument("--state", choices=[state.value for state in JobState], help="derived state (see docs)")
    add_bulk_options(parser, verb=verb, noun=_JOB)


def selection(args: argparse.Namespace, verb: str) -> JobFilter:
    """Ids, or filters (``--all`` for none): exactly one way of choosing, as for dead-letter entries."""
    filtering = args.task is not None or args.queue is not None or args.state is not None
    if args.ids and (filtering or args.all):
        raise ConfigurationError(f"jobs {verb}: give job ids or filters (or --all), not both")
    if not args.ids and not filtering and not args.all and not args.dry_run:
        raise ConfigurationError(f"jobs {verb}: give job ids, or filters, or --all to {verb} every job")
    state = None if args.state is None else JobState(args.state)
    return JobFilter(task=args.task, queue=args.queue, state=state, ids=list(args.ids) or None)


async def id_pages(utils: WorkerUtils, which: JobFilter, batch_size: int) -> AsyncIterator[list[int]]:
    """The chosen job ids, ``batch_size`` at a time: the given ids in chunks, or the filter's matches by
    ascending id, a page read only once the previous page was acted on."""
    if which.ids is not None:
        for chunk in chunks(which.ids, batch_size):
            yield chunk
        return
    after = 0
    while page := await utils.job_id_page(which, after=after, limit=batch_size):
        yield page
        if len(page) < batch_size:
            return
        after = page[-1]


async def _batches(utils: WorkerUtils, which: JobFilter, batch_size: int, action: Action) -> AsyncIterator[Batch]:
    async for ids in id_pages(utils, which, batch_size):
        yield ids, await action(utils, ids)


async def _act(args: argparse.Namespace, verb: str, done_verb: str, action: Action) -> int:
    which = selection(args, verb)
    batch_size = batch_size_of(args)
    ask = needs_confirmation(args, verb)  # before connecting: a refusal never touches the database
    async with open_utils(args) as utils:
        if args.dry_run:
            return await _dry_run(args, utils, which, verb, done_verb)
        total = len(set(which.ids)) if which.ids is not None else await utils.count_jobs(which)
        if ask and not confirmed(f"{verb} {_JOB.count(total)}?"):
            return EXIT_FAILURE

        def failed(done: list[Batch]) -> None:
            _report(args, done_verb, done, finished=False)
            stopped(done_verb, sum(len(jobs) for _, jobs in done), total, _JOB, batches=len(done))

        done = await walk(
            _batches(utils, which, batch_size, action),
            total=total,
            noun=_JOB,
            size=lambda batch: len(batch[0]),
            on_failure=failed,
        )
    return EXIT_OK if _report(args, done_verb, done, finished=True) else EXIT_NOT_FOUND


async def _dry_run(args: argparse.Namespace, utils: WorkerUtils, which: JobFilter, verb: str, done_verb: str) -> int:
    """Count the jobs the action would change now: those matching and not locked by a worker."""
    count = await utils.count_jobs(which, actable_only=True)
    if args.json:
        print_json({"dry_run": True, "count": count})
    else:
        print("dry run: nothing was changed")
        if count:
            print(f"would {verb} {_JOB.count(count)}")
    if not count:
        note(f"no job would be {done_verb}")
    return EXIT_OK if count else EXIT_NOT_FOUND


def _report(args: argparse.Namespace, done_verb: str, batches: list[Batch], *, finished: bool) -> int:
    """Print the jobs acted on (a summary, or every job with --json); name those that were not; the count."""
    done = [job for _, jobs in batches for job in jobs]
    done_ids = {job.id for job in done}
    missed = [job_id for asked, _ in batches for job_id in asked if job_id not in done_ids]
    if args.json:
        print_json(done)
    elif finished and done:
        print(summary(done_verb, len(done), _JOB, batches=len(batches), listed=[str(job.id) for job in done]))
    if missed:
        # Chosen by filter, a job exists when its page is read: only a lock can stop the function.
        why = "no such job, or locked by a worker" if args.ids else "locked by a worker"
        note(f"not {done_verb}: {_JOB.count(len(missed))} ({why}): {some(missed)}")
    return len(done)


async def _complete_command(args: argparse.Namespace) -> int:
    async def complete(utils: WorkerUtils, ids: list[int]) -> list[Job]:
        return await utils.complete_jobs(ids)

    return await _act(args, "complete", "completed", complete)


async def _fail_command(args: argparse.Namespace) -> int:
    async def fail(utils: WorkerUtils, ids: list[int]) -> list[Job]:
        return await utils.permanently_fail_jobs(ids, args.reason)

    return await _act(args, "fail", "failed", fail)


async def _reschedule_command(args: argparse.Namespace) -> int:
    run_at = run_at_from(args)
    if run_at is None and args.priority is None and args.attempts is None and args.max_attempts is None:
        raise ConfigurationError(
            "jobs reschedule: give at least one of --run-at/--delay, --priority, --attempts, --max-attempts"
        )

    async def reschedule(utils: WorkerUtils, ids: list[int]) -> list[Job]:
        return await utils.reschedule_jobs(
            ids, run_at=run_at, priority=args.priority, attempts=args.attempts, max_attempts=args.max_attempts
        )

    return await _act(args, "reschedule", "rescheduled", reschedule)
