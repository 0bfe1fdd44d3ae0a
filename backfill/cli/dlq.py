"""``backfill dlq list|show|requeue|delete|stats|note``: triage of the dead-letter queue.

Everything goes through :class:`backfill.dlq.DeadLetterQueue`. Acting commands choose entries by id or by
filter; a filter that would match everything must be spelled ``--all`` (a dry run may leave it out). When
nothing matched (an unknown id, no entry acted on) the command exits 3. ``requeue`` and ``delete`` work in
batches, each its own transaction (see backfill/cli/bulk.py).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backfill.cli.bulk import (
    LISTED_AT_MOST,
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
    parse_time,
    run_at_from,
    schema_of,
)
from backfill.cli.output import NONE, cell, note, print_json, table, timestamp
from backfill.core import ConfigurationError
from backfill.core.extension import database_url_from_env
from backfill.dlq import (
    DeadLetterEntry,
    DeadLetterFilter,
    DeadLetterQueue,
    DeleteResult,
    EntryState,
    RequeueResult,
)
from backfill.exit_codes import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK


def register(commands: Commands) -> None:
    dlq = commands.add_parser(
        "dlq",
        help="the dead-letter queue: list, show, requeue, delete",
        description="Triage permanently failed jobs kept in the dead-letter queue.",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="entries, newest failure first", description="List dead-letter entries, newest failure first."
    )
    _filter_options(listing, state=True)
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N entries (default 50)")
    listing.add_argument("--after", metavar="CURSOR", help="the cursor a previous page printed: the next page")
    _common(listing, _list_command)

    show = actions.add_parser(
        "show", help="one entry: every error, notes, payload", description="Show one entry in full."
    )
    show.add_argument("id", type=int, metavar="ID")
    _common(show, _show_command)

    requeue = actions.add_parser(
        "requeue",
        help="make jobs of entries again",
        description="Add the entries' jobs back to the queue (fresh attempts); entries become 'requeued'.",
    )
    requeue.add_argument("ids", type=int, nargs="*", metavar="ID", help="entry ids (or use filters, or --all)")
    _filter_options(requeue, state=False)
    add_bulk_options(requeue, verb="requeue", noun=_ENTRY)
    requeue.add_argument("--priority", type=int, metavar="N", help="instead of the entry's priority")
    add_run_at_options(requeue)
    requeue.add_argument("--max-attempts", type=int, metavar="N", help="instead of the entry's max_attempts")
    requeue.add_argument("--note", metavar="TEXT", help="appended to the entries' notes (say why)")
    _common(requeue, _requeue_command)

    delete = actions.add_parser("delete", help="delete entries", description="Delete dead-letter entries.")
    delete.add_argument("ids", type=int, nargs="*", metavar="ID", help="entry ids (or use filters, or --all)")
    _filter_options(delete, state=True)
    add_bulk_options(delete, verb="delete", noun=_ENTRY)
    _common(delete, _delete_command)

    stats = actions.add_parser(
        "stats", help="counts by task, reason and error", description="Summarise the dead-letter queue."
    )
    _common(stats, _stats_command)

    annotate = actions.add_parser(
        "note", help="append a note to an entry", description="Append a note (stamped in UTC) to an entry."
    )
    annotate.add_argument("id", type=int, metavar="ID")
    annotate.add_argument("text", metavar="TEXT")
    _common(annotate, _note_command)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_database_options(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handler)


def _filter_options(parser: argparse.ArgumentParser, *, state: bool) -> None:
    parser.add_argument("--task", metavar="T", help="task identifier")
    parser.add_argument("--queue", metavar="Q", help="queue name")
    parser.add_argument("--since", metavar="ISO", help="failed at or after this time (with offset)")
    parser.add_argument("--until", metavar="ISO", help="failed before this time (with offset)")
    parser.add_argument("--error", metavar="TEXT", help="any of the errors contains TEXT (any case)")
    parser.add_argument(
        "--exception-type", metavar="E", help="the last attempt raised exactly this type (KeyError, myapp.Error)"
    )
    if state:
        parser.add_argument("--state", choices=[s.value for s in EntryState], help="dead or requeued")


def _filter_from(args: argparse.Namespace) -> DeadLetterFilter:
    return DeadLetterFilter(
        task=args.task,
        queue=args.queue,
        since=None if args.since is None else parse_time("--since", args.since),
        until=None if args.until is None else parse_time("--until", args.until),
        error=args.error,
        state=getattr(args, "state", None),
        exception_type=args.exception_type,
    )


def _choice(args: argparse.Namespace) -> tuple[list[int] | None, DeadLetterFilter | None]:
    """Ids, or a filter: the API refuses both at once, and an empty filter without --all (dry runs aside)."""
    where = _filter_from(args)
    if args.ids:
        if not where.is_empty:
            raise ConfigurationError(f"dlq {args.dlq_command}: give entry ids or filters, not both")
        return list(args.ids), None
    return None, where


_ENTRY = Noun("entry", "entries")


def _entries(count: int) -> str:
    return _ENTRY.count(count)


@asynccontextmanager
async def _open(args: argparse.Namespace) -> AsyncIterator[DeadLetterQueue]:
    async with DeadLetterQueue(database_url_from_env(args.database_url), schema=schema_of(args)) as dlq:
        yield dlq


_LIST_HEADERS = ("ID", "TASK", "QUEUE", "STATE", "REASON", "ATTEMPTS", "FAILED_AT", "REQUEUES", "LAST_ERROR")


async def _list_command(args: argparse.Namespace) -> int:
    async with _open(args) as dlq:
        page = await dlq.list(_filter_from(args), limit=args.limit, after=args.after)
    if args.json:
        print_json(page)
        return EXIT_OK
    rows = [
        (
            entry.id,
            entry.task_identifier,
            entry.queue_name,
            entry.state,
            entry.reason,
            f"{entry.attempts}/{entry.max_attempts}",
            entry.failed_at,
            entry.requeue_count,
            entry.last_error,
        )
        for entry in page.entries
    ]
    print(table(_LIST_HEADERS, rows, right=("ID", "ATTEMPTS", "REQUEUES")))
    if page.next_cursor is not None:
        note(f"{_entries(len(page.entries))} shown; the next page: --after '{page.next_cursor}'")
    return EXIT_OK


async def _show_command(args: argparse.Namespace) -> int:
    async with _open(args) as dlq:
        entry = await dlq.get(args.id)
    if args.json:
        print_json(entry)
    elif entry is not None:
        print(_describe(entry))
    if entry is None:
        note(f"no dead-letter entry with id {args.id}")
        return EXIT_NOT_FOUND
    return EXIT_OK


def _describe(entry: DeadLetterEntry) -> str:
    fields: list[tuple[str, object]] = [
        ("id", entry.id),
        ("job_id", entry.job_id),
        ("task", entry.task_identifier),
        ("queue", entry.queue_name),
        ("state", entry.state),
        ("reason", entry.reason),
        ("priority", entry.priority),
        ("attempts", f"{entry.attempts}/{entry.max_attempts}"),
        ("key", entry.job_key),
        ("flags", entry.flags),
        ("created_at", entry.created_at),
        ("run_at", entry.run_at),
        ("failed_at", entry.failed_at),
        ("exception", entry.exception_type),
        ("requeues", entry.requeue_count),
        ("requeued_at", entry.requeued_at),
        ("requeued_job", entry.requeued_job_id),
    ]
    width = max(len(name) for name, _ in fields)
    lines = [f"{name.ljust(width)}  {cell(value)}" for name, value in fields]
    # Every error in full, oldest first: this is the one place a person asked to read them.
    lines.append(f"errors ({len(entry.errors)}):")
    for error in entry.errors:
        when = NONE if error.failed_at is None else timestamp(error.failed_at)
        permanent = " permanent" if error.permanent else ""
        text = (error.error or NONE).splitlines() or [NONE]
        lines.append(f"  #{error.attempt} job {error.job_id} at {when}{permanent}: {text[0]}")
        lines.extend("      " + line for line in text[1:])
    # Only the last attempt's: a job may fail 25 times, and the earlier tracebacks are rarely different.
    lines.append("traceback (last attempt):")
    lines.extend("  " + line for line in (entry.traceback or NONE).splitlines())
    lines.append("notes:")
    lines.extend("  " + line for line in (entry.notes or NONE).splitlines())
    lines.append("payload:")
    lines.append(json.dumps(entry.payload, indent=2, ensure_ascii=False))
    return "\n".join(lines)


async def _requeue_command(args: argparse.Namespace) -> int:
    ids, where = _choice(args)
    run_at = run_at_from(args)
    batch_size = batch_size_of(args)
    ask = needs_confirmation(args, "requeue")  # before connecting: a refusal never touches the database
    async with _open(args) as dlq:
        total = len(set(ids)) if ids is not None else await dlq.count(where, dead_only=True)
        if ask and not confirmed(f"requeue {_ENTRY.count(total)}?"):
            return EXIT_FAILURE

        def failed(done: list[RequeueResult]) -> None:
            _report_requeue(args, done, finished=False)
            stopped("requeued", sum(len(r.requeued) for r in done), total, _ENTRY, batches=len(done))

        batches = dlq.requeue_batches(
            ids,
            filter=where,
            all=args.all,
            dry_run=args.dry_run,
            priority=args.priority,
            run_at=run_at,
            max_attempts=args.max_attempts,
            note=args.note,
            batch_size=batch_size,
        )
        done = await walk(
            batches, total=total, noun=_ENTRY, size=lambda r: len(r.requeued) + len(r.skipped), on_failure=failed
        )
    requeued = _report_requeue(args, done, finished=True)
    return EXIT_OK if requeued else EXIT_NOT_FOUND


def _report_requeue(args: argparse.Namespace, batches: list[RequeueResult], *, finished: bool) -> int:
    """Print what the batches requeued (stdout) and skipped (stderr); the number requeued."""
    requeued = [r for batch in batches for r in batch.requeued]
    skipped = [s for batch in batches for s in batch.skipped]
    if args.json:
        print_json(
            {
                "requeued": requeued,
                "skipped": skipped,
                "dry_run": args.dry_run,
                "batches": len(batches),
                "finished": finished,
            }
        )
    elif not finished:
        pass  # the note on stderr says how far it got; stdout stays empty for a failed command
    elif args.dry_run:
        print("dry run: nothing was changed")
        if requeued:
            listed = [str(r.entry_id) for r in requeued]
            print(summary("would requeue", len(requeued), _ENTRY, batches=len(batches), listed=listed))
    elif requeued:
        listed = [f"{r.entry_id} as job {r.job_id}" for r in requeued]
        print(summary("requeued", len(requeued), _ENTRY, batches=len(batches), listed=listed))
    if len(skipped) <= LISTED_AT_MOST:
        for one in skipped:
            note(f"not requeued: entry {one.entry_id} ({one.reason})")
    else:
        first = skipped[0]
        note(
            f"not requeued: {_ENTRY.count(len(skipped))}, e.g. entry {first.entry_id} ({first.reason}); "
            "--json lists each with its reason"
        )
    if finished and not requeued:
        note("no entry was requeued" if not args.dry_run else "no entry would be requeued")
    return len(requeued)


async def _delete_command(args: argparse.Namespace) -> int:
    ids, where = _choice(args)
    batch_size = batch_size_of(args)
    ask = needs_confirmation(args, "delete")
    async with _open(args) as dlq:
        total = len(set(ids)) if ids is not None else await dlq.count(where)
        if ask and not confirmed(f"delete {_ENTRY.count(total)}?"):
            return EXIT_FAILURE

        def failed(done: list[DeleteResult]) -> None:
            _report_delete(args, done, finished=False)
            stopped("deleted", sum(len(r.deleted) for r in done), total, _ENTRY, batches=len(done))

        batches = dlq.delete_batches(ids, filter=where, all=args.all, dry_run=args.dry_run, batch_size=batch_size)
        done = await walk(
            batches, total=total, noun=_ENTRY, size=lambda r: len(r.deleted) + len(r.missing), on_failure=failed
        )
    deleted = _report_delete(args, done, finished=True)
    return EXIT_OK if deleted else EXIT_NOT_FOUND


def _report_delete(args: argparse.Namespace, batches: list[DeleteResult], *, finished: bool) -> int:
    deleted = [entry_id for batch in batches for entry_id in batch.deleted]
    missing = [entry_id for batch in batches for entry_id in batch.missing]
    if args.json:
        print_json(
            {
                "deleted": deleted,
                "missing": missing,
                "dry_run": args.dry_run,
                "batches": len(batches),
                "finished": finished,
            }
        )
    elif finished:
        if args.dry_run:
            print("dry run: nothing was changed")
        if deleted:
            verb = "would delete" if args.dry_run else "deleted"
            print(summary(verb, len(deleted), _ENTRY, batches=len(batches), listed=[str(i) for i in deleted]))
    if missing:
        note(f"no such entry: {some(missing)}")
    if finished and not deleted:
        note("no entry matched")
    return len(deleted)


async def _stats_command(args: argparse.Namespace) -> int:
    async with _open(args) as dlq:
        stats = await dlq.stats()
    if args.json:
        print_json(stats)
        return EXIT_OK
    print(
        f"{_entries(stats.total)}: {stats.dead} dead, {stats.requeued} requeued; "
        f"failed between {cell(stats.oldest_failed_at)} and {cell(stats.newest_failed_at)}"
    )
    for title, counts in (
        ("TASK", stats.by_task),
        ("REASON", stats.by_reason),
        ("EXCEPTION", stats.by_exception_type),
        ("ERROR", stats.top_errors),
    ):
        if counts:
            print()
            print(table((title, "ENTRIES"), [(c.value, c.count) for c in counts], right=("ENTRIES",)))
    return EXIT_OK


async def _note_command(args: argparse.Namespace) -> int:
    async with _open(args) as dlq:
        entry = await dlq.annotate(args.id, args.text)
    if args.json:
        print_json(entry)
    if entry is None:
        note(f"no dead-letter entry with id {args.id}")
        return EXIT_NOT_FOUND
    if not args.json:
        print(f"noted on entry {entry.id}")
    return EXIT_OK
