"""``python -m bench``: measure backfill, Node graphile-worker and the peers on one database, in one run."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

from backfill.core.db import redact_dsn
from bench import harness
from bench.database import BenchDatabase, database_url
from bench.machine import machine_facts
from bench.phases import Settings
from bench.report import render, write_json
from bench.systems import ALL_SYSTEMS


def _systems(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {','.join(ALL_SYSTEMS)}; got {value!r}")
    return list(dict.fromkeys(names))


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (off) or more, got {value}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--jobs", type=_positive, default=100_000, help="jobs to enqueue and drain (100000)")
    parser.add_argument("--batch", type=_positive, default=1_000, help="jobs per bulk enqueue call (1000)")
    parser.add_argument("--latency-jobs", type=_positive, default=1_000, help="jobs in the latency run (1000)")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="pause between latency jobs (5 ms)")
    parser.add_argument("--concurrency", type=_positive, default=24, help="worker concurrency (24)")
    parser.add_argument(
        "--drain-limit", type=float, default=90.0, help="seconds a drain may run before it is stopped (90)"
    )
    parser.add_argument(
        "--single-jobs", type=_positive, default=5_000, help="awaited single-job enqueues, back to back (5000)"
    )
    parser.add_argument(
        "--fast-jobs", type=_count, default=300, help="Fast-lane jobs per pickup measurement, 0: skip (300)"
    )
    parser.add_argument(
        "--lane-bulk-jobs", type=_positive, default=300_000, help="Bulk backlog under the Fast-lane pickup (300000)"
    )
    parser.add_argument(
        "--idle-backlog",
        type=_count,
        default=1_000_000,
        help="jobs scheduled an hour ahead for the idle-cost measurement, 0: skip (1000000)",
    )
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="idle-cost window (20 s)")
    parser.add_argument(
        "--backlog-jobs", type=_count, default=0, help="drain a backlog this large and report peak RSS, 0: skip (0)"
    )
    parser.add_argument("--systems", type=_systems, default=list(ALL_SYSTEMS), help=",".join(ALL_SYSTEMS))
    parser.add_argument("--repeat", type=_positive, default=1, help="runs of each measurement; the median is shown")
    parser.add_argument("--database-url", help="default: DATABASE_URL, else a throwaway embedded PostgreSQL")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    return parser


def _command(argv: list[str]) -> str:
    """The command line as typed, with any password in the database URL masked."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    shown: list[str] = []
    for arg in argv:
        if shown and shown[-1] == "--database-url":
            shown.append(redact_dsn(arg))
        elif arg.startswith("--database-url="):
            shown.append("--database-url=" + redact_dsn(arg.split("=", 1)[1]))
        else:
            shown.append(arg)
    return shlex.join([python, "-m", "bench", *shown])


async def _main(args: argparse.Namespace, dsn: str, command: str) -> None:
    settings = Settings(
        dsn=dsn,
        jobs=args.jobs,
        batch=args.batch,
        latency_jobs=args.latency_jobs,
        gap_ms=args.gap_ms,
        concurrency=args.concurrency,
        drain_limit=args.drain_limit,
        single_jobs=args.single_jobs,
        fast_jobs=args.fast_jobs,
        lane_bulk_jobs=args.lane_bulk_jobs,
        idle_backlog=args.idle_backlog,
        idle_seconds=args.idle_seconds,
        backlog_jobs=args.backlog_jobs,
    )
    db = await BenchDatabase.connect(dsn)
    try:
        postgres_version = await db.server_version()
    finally:
        await db.close()
    results = await harness.run(args.systems, settings, args.repeat)
    facts = machine_facts(postgres_version)
    print(render(command=command, facts=facts, settings=settings, repeat=args.repeat, results=results))
    if args.json is not None:
        write_json(args.json, command=command, facts=facts, settings=settings, repeat=args.repeat, results=results)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    with database_url(args.database_url) as dsn:
        asyncio.run(_main(args, dsn, _command(argv)))


if __name__ == "__main__":
    main()
