"""What the commands share: the database options, opening the database, and parsing times and payloads.

Bad input raises :class:`ConfigurationError` naming the option, which ``main`` turns into exit code 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

import asyncpg

from backfill.core import ConfigurationError, SchemaName, WorkerUtils
from backfill.core.extension import connect, database_url_from_env, is_aware

# argparse's type for the object add_subparsers() returns is private; this names it once.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", "-c", default=None, help="default: $DATABASE_URL")
    parser.add_argument("--schema", "-s", default=None, help="default: $GRAPHILE_WORKER_SCHEMA or graphile_worker")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON to stdout")


def schema_of(args: argparse.Namespace) -> SchemaName:
    return SchemaName.from_env(args.schema)


@asynccontextmanager
async def open_utils(args: argparse.Namespace) -> AsyncIterator[WorkerUtils]:
    """WorkerUtils on the database and schema the options name (their own pool, closed on exit)."""
    async with WorkerUtils(database_url_from_env(args.database_url), schema=schema_of(args)) as utils:
        yield utils


@asynccontextmanager
async def open_connection(args: argparse.Namespace) -> AsyncIterator[asyncpg.Connection[Any]]:
    """One connection, for core functions that take a connection rather than WorkerUtils."""
    connection = await connect(database_url_from_env(args.database_url))
    try:
        yield connection
    finally:
        await connection.close()


def parse_payload(text: str | None) -> Any:
    """The PAYLOAD_JSON argument, decoded; a usage error saying where the JSON breaks."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"PAYLOAD_JSON is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None


def parse_time(option: str, text: str) -> datetime:
    """An ISO 8601 time with a UTC offset (``Z`` allowed): a time without one is ambiguous across hosts."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"{option}: {text!r} is not an ISO 8601 time (e.g. 2030-01-31T09:00:00Z or 2030-01-31T10:00:00+01:00)"
        ) from None
    if not is_aware(value):
        raise ConfigurationError(f"{option}: {text!r} has no UTC offset; add one, e.g. {text}Z or {text}+01:00")
    return value


def run_at_from(args: argparse.Namespace) -> datetime | None:
    """``--run-at`` or ``--delay`` (an argparse group keeps them exclusive), else ``None``."""
    if args.run_at is not None:
        return parse_time("--run-at", args.run_at)
    if args.delay is not None:
        if args.delay < 0:
            raise ConfigurationError(f"--delay: must be zero or more seconds, got {args.delay:g}")
        return datetime.now(UTC) + timedelta(seconds=args.delay)
    return None


def add_run_at_options(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--run-at", metavar="ISO", help="when to run, ISO 8601 with offset (e.g. 2030-01-31T09:00:00Z)")
    when.add_argument("--delay", type=float, metavar="SECONDS", help="run this many seconds from now")
