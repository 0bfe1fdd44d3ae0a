"""What the bulk commands share (``dlq requeue|delete``, ``jobs complete|fail|reschedule``): the options,
asking before ``--all``, progress on a terminal, and a summary line instead of every id.

- ``--batch-size N``: each batch of at most N is its own transaction (the commands walk the chosen rows in
  ascending id), so acting on 100,000 rows never holds one long transaction, and a failure midway leaves the
  earlier batches done: the command says how far it got, exits non-zero, and re-running it continues.
- ``--all`` changes every row: on a terminal the command asks first; without one it refuses (exit 2) unless
  ``--yes`` says it is meant. A dry run changes nothing and never asks.
- Progress (``\\r12000/100000 entries``) goes to stderr only when stderr is a terminal: never into a pipe
  or a CI log. Results stay on stdout: a summary line, the ids only when there are few; ``--json`` keeps them
  all.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from backfill.cli.output import note
from backfill.core import ConfigurationError
from backfill.core.extension import check_int

T = TypeVar("T")

DEFAULT_BATCH_SIZE = 1000  # the API's default (backfill.dlq.batches): under a second a batch on a small machine
MAX_BATCH_SIZE = 10_000  # the dead-letter API's cap on a page
LISTED_AT_MOST = 10  # a summary names the ids it acted on up to this many; beyond, --json has them


@dataclass(frozen=True, slots=True)
class Noun:
    one: str
    many: str

    def count(self, count: int) -> str:
        return f"{count} {self.one if count == 1 else self.many}"


BATCH = Noun("batch", "batches")


def add_bulk_options(parser: argparse.ArgumentParser, *, verb: str, noun: Noun) -> None:
    parser.add_argument("--all", action="store_true", help=f"{verb} every {noun.one} the filters match, even no filter")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask before --all (needed without a terminal)")
    parser.add_argument("--dry-run", action="store_true", help="say how many would be acted on, change nothing")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"{noun.many} per transaction (default {DEFAULT_BATCH_SIZE})",
    )


def batch_size_of(args: argparse.Namespace) -> int:
    size: int = args.batch_size
    check_int("--batch-size:", size, 1, MAX_BATCH_SIZE)
    return size


def needs_confirmation(args: argparse.Namespace, verb: str) -> bool:
    """Whether to ask before acting; refuses ``--all`` without a terminal to ask on (and without ``--yes``)."""
    if not args.all or args.yes or args.dry_run:
        return False
    if not sys.stdin.isatty():
        raise ConfigurationError(
            f"--all would {verb} everything the filters match: confirm on a terminal, or pass --yes to proceed"
        )
    return True


def confirmed(question: str) -> bool:
    """Ask ``question [y/N]`` on stderr and read the answer from the terminal; only y or yes proceeds."""
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    if answer.strip().lower() in ("y", "yes"):
        return True
    note("not confirmed: nothing was changed")
    return False


class Progress:
    """``\\rdone/total noun`` on stderr, rewritten in place, when stderr is a terminal; otherwise nothing."""

    def __init__(self, total: int, noun: Noun) -> None:
        self._total = total
        self._noun = noun
        self._shown = False
        self._enabled = sys.stderr.isatty()

    def show(self, done: int) -> None:
        if self._enabled:
            sys.stderr.write(f"\r{done}/{self._total} {self._noun.many}")
            sys.stderr.flush()
            self._shown = True

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")  # back to the line's start and erase it: the summary takes its place
            sys.stderr.flush()
            self._shown = False


async def walk(
    batches: AsyncIterator[T],
    *,
    total: int,
    noun: Noun,
    size: Callable[[T], int],
    on_failure: Callable[[list[T]], None],
) -> list[T]:
    """Every batch's result, showing progress by ``size`` (the rows each batch looked at). On an error,
    ``on_failure`` gets the batches done (to say how far it got) and the error goes on to the caller."""
    progress = Progress(total, noun)
    done: list[T] = []
    looked_at = 0
    try:
        async for result in batches:
            done.append(result)
            looked_at += size(result)
            progress.show(looked_at)
    except BaseException:  # Ctrl-C too: the batches committed so far are worth reporting
        progress.clear()
        on_failure(done)
        raise
    progress.clear()
    return done


def summary(verb: str, count: int, noun: Noun, *, batches: int, listed: Sequence[str] = ()) -> str:
    """``requeued 100000 entries in 100 batches``; with few, the ids too: ``completed 2 jobs: 41, 42``."""
    text = f"{verb} {noun.count(count)}"
    if batches > 1:
        text += f" in {BATCH.count(batches)}"
    if listed and count <= LISTED_AT_MOST:
        text += ": " + ", ".join(listed)
    return text


def stopped(verb: str, count: int, total: int, noun: Noun, *, batches: int) -> None:
    """On stderr, after a failure: how much was done, and that re-running the command continues."""
    note(
        f"{verb} {count} of {noun.count(total)} in {BATCH.count(batches)} before the failure; "
        "those are committed: run the same command again to continue"
    )


def some(ids: Sequence[object]) -> str:
    """Ids for a note: all of them when few, else the first few and how many more."""
    shown = ", ".join(map(str, ids[:LISTED_AT_MOST]))
    more = len(ids) - LISTED_AT_MOST
    return shown if more <= 0 else f"{shown} and {more} more (--json lists them)"
