"""``backfill dlq list|show|requeue|delete|stats|note``: triage of the dead-letter queue.

Everything goes through :class:`backfill.dlq.DeadLetterQueue`. Acting commands choose entries by id or by
filter; a filter that would match everything must be spelled ``--all`` (a dry run may leave it out). When
nothing matched (an unknown id, no entry acted on) the command exits 3.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from backfill.cli.common import (
    Commands,
    add_database_options,
    add_json_option,
    add_run_at_options,
    parse_time,
    run_at_from,
    schema_of,
)
from backfill.cli.exit_codes import EXIT_NOT_FOUND, EXIT_OK
from backfill.cli.output import NONE, cell, note, print_json, table, timestamp
from backfill.core.db import database_url_from_env
from backfill.core.errors import ConfigurationError
from backfill.dlq import DeadLetterEntry, DeadLetterFilter, DeadLetterQueue, EntryState, RequeueResult


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
    _all_and_dry_run(requeue, "requeue")
    requeue.add_argument("--priority", type=int, metavar="N", help="instead of the entry's priority")
    add_run_at_options(requeue)
    requeue.add_argument("--max-attempts", type=int, metavar="N", help="instead of the entry's max_attempts")
    requeue.add_argument("--note", metavar="TEXT", help="appended to the entries' notes (say why)")
    _common(requeue, _requeue_command)

    delete = actions.add_parser("delete", help="delete entries", description="Delete dead-letter entries.")
    delete.add_argument("ids", type=int, nargs="*", metavar="ID", help="entry ids (or use filters, or --all)")
    _filter_options(delete, state=True)
    _all_and_dry_run(delete, "delete")
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
    if state:
        parser.add_argument("--state", choices=[s.value for s in EntryState], help="dead or requeued")


def _all_and_dry_run(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--all", action="store_true", help=f"{verb} every entry the filters match, even no filter")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")


def _filter_from(args: argparse.Namespace) -> DeadLetterFilter:
    return DeadLetterFilter(
        task=args.task,
        queue=args.queue,
        since=None if args.since is None else parse_time("--since", args.since),
        until=None if args.until is None else parse_time("--until", args.until),
        error=args.error,
        state=getattr(args, "state", None),
    )


def _choice(args: argparse.Namespace) -> tuple[list[int] | None, DeadLetterFilter | None]:
    """Ids, or a filter: the API refuses both at once, and an empty filter without --all (dry runs aside)."""
    where = _filter_from(args)
    if args.ids:
        if not where.is_empty:
            raise ConfigurationError(f"dlq {args.dlq_command}: give entry ids or filters, not both")
        return list(args.ids), None
    return None, where


def _entries(count: int) -> str:
    return f"{count} entry" if count == 1 else f"{count} entries"


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
    lines.append("notes:")
    lines.extend("  " + line for line in (entry.notes or NONE).splitlines())
    lines.append("payload:")
    lines.append(json.dumps(entry.payload, indent=2, ensure_ascii=False))
    return "\n".join(lines)


async def _requeue_command(args: argparse.Namespace) -> int:
    ids, where = _choice(args)
    run_at = run_at_from(args)
    async with _open(args) as dlq:
        result = await dlq.requeue(
            ids,
            filter=where,
            all=args.all,
            dry_run=args.dry_run,
            priority=args.priority,
            run_at=run_at,
            max_attempts=args.max_attempts,
            note=args.note,
        )
    _report_requeue(args, result)
    return EXIT_OK if result.requeued else EXIT_NOT_FOUND


def _report_requeue(args: argparse.Namespace, result: RequeueResult) -> None:
    if args.json:
        print_json(result)
    elif result.dry_run:
        print("dry run: nothing was changed")
        if result.requeued:
            listed = ", ".join(str(r.entry_id) for r in result.requeued)
            print(f"would requeue {_entries(len(result.requeued))}: {listed}")
    elif result.requeued:
        listed = ", ".join(f"{r.entry_id} as job {r.job_id}" for r in result.requeued)
        print(f"requeued {_entries(len(result.requeued))}: {listed}")
    for skipped in result.skipped:
        note(f"not requeued: entry {skipped.entry_id} ({skipped.reason})")
    if not result.requeued:
        note("no entry was requeued" if not result.dry_run else "no entry would be requeued")


async def _delete_command(args: argparse.Namespace) -> int:
    ids, where = _choice(args)
    async with _open(args) as dlq:
        result = await dlq.delete(ids, filter=where, all=args.all, dry_run=args.dry_run)
    if args.json:
        print_json(result)
    else:
        if result.dry_run:
            print("dry run: nothing was changed")
        if result.deleted:
            verb = "would delete" if result.dry_run else "deleted"
            print(f"{verb} {_entries(len(result.deleted))}: {', '.join(map(str, result.deleted))}")
    if result.missing:
        note(f"no such entry: {', '.join(map(str, result.missing))}")
    if not result.deleted:
        note("no entry matched")
        return EXIT_NOT_FOUND
    return EXIT_OK


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
    for title, counts in (("TASK", stats.by_task), ("REASON", stats.by_reason), ("ERROR", stats.top_errors)):
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
