"""``backfill stats``, ``queues``, ``workers``, ``cleanup`` and ``sweep``: the state of the queue, and tidying it."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import asyncpg

from backfill.cli.common import Commands, add_database_options, add_json_option, open_connection, open_utils, schema_of
from backfill.cli.output import age, note, plural, print_json, table
from backfill.control import list_pauses
from backfill.core import DatabaseError, SchemaName, TaskStats
from backfill.core.extension import CLEANUP_TASKS, DEFAULT_CLEANUP_TASKS, Executor
from backfill.exit_codes import EXIT_OK
from backfill.jsonable import to_jsonable
from backfill.lanes.figures import LaneStats, lane_stats, queue_lanes

_STATES = ("waiting", "scheduled", "running", "retrying", "failed")


def register(commands: Commands) -> None:
    stats = commands.add_parser(
        "stats", help="jobs per task and state, with totals", description="Count jobs per task identifier and state."
    )
    _common(stats, _stats_command)

    queues = commands.add_parser(
        "queues", help="named queues: backlog, lock, oldest wait", description="Show every named queue."
    )
    _common(queues, _queues_command)

    workers = commands.add_parser(
        "workers",
        help="registered workers and lock owners",
        description="Show registered backfill workers and every worker holding a lock (Node workers included).",
    )
    _common(workers, _workers_command)

    cleanup = commands.add_parser(
        "cleanup",
        help="Graphile's cleanup tasks",
        description=f"Run Graphile's cleanup tasks (default: {' and '.join(DEFAULT_CLEANUP_TASKS)}).",
    )
    cleanup.add_argument(
        "--task",
        action="append",
        choices=CLEANUP_TASKS,
        metavar="TASK",
        help=f"one of {', '.join(CLEANUP_TASKS)} (repeatable)",
    )
    cleanup.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="IDENT",
        help="task identifier GC_TASK_IDENTIFIERS keeps (repeatable)",
    )
    _common(cleanup, _cleanup_command)

    sweep = commands.add_parser(
        "sweep",
        help="rescue what dead backfill workers held",
        description="Release the jobs and queues of registered workers whose heartbeat stopped.",
    )
    sweep.add_argument("--dry-run", action="store_true", help="report what would be done, change nothing")
    sweep.add_argument(
        "--max-recoveries",
        type=int,
        default=3,
        metavar="N",
        help="fail a job rescued from more than N dead workers as a poison pill (default 3)",
    )
    _common(sweep, _sweep_command)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_database_options(parser)
    add_json_option(parser)
    parser.set_defaults(handler=handler)


async def _paused(connection: Executor, schema: SchemaName) -> set[tuple[str, str]]:
    """(kind, name) of every pause in force; none in a schema whose control tables are not installed yet."""
    try:
        return {(p.kind.value, p.name) for p in await list_pauses(connection, schema)}
    except DatabaseError as error:
        if isinstance(error.__cause__, asyncpg.UndefinedTableError):
            return set()
        raise


def _shown(name: str, paused: bool) -> str:
    return f"{name} (paused)" if paused else name


async def _stats_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        tasks = await utils.task_stats()
    async with open_connection(args) as connection:
        lanes = await lane_stats(connection, schema_of(args))
        paused = await _paused(connection, schema_of(args))
    totals = {state: sum(getattr(task, state) for task in tasks) for state in _STATES}
    totals["total"] = sum(task.total for task in tasks)
    if args.json:
        print_json(
            {
                "tasks": [{**_with_total(task), "paused": ("task", task.task_identifier) in paused} for task in tasks],
                "lanes": [{**_lane_with_total(lane), "paused": ("lane", lane.lane) in paused} for lane in lanes],
                "totals": totals,
            }
        )
        return EXIT_OK
    headers = ("TASK", *(state.upper() for state in _STATES), "TOTAL")
    rows = [
        (
            _shown(task.task_identifier, ("task", task.task_identifier) in paused),
            *(getattr(task, s) for s in _STATES),
            task.total,
        )
        for task in tasks
    ]
    rows.append(("(all tasks)", *totals.values()))
    print(table(headers, rows, right=headers[1:]))
    if lanes:
        print()
        lane_headers = ("LANE", *(state.upper() for state in _STATES), "TOTAL")
        lane_rows = [
            (_shown(lane.lane, ("lane", lane.lane) in paused), *(getattr(lane, s) for s in _STATES), lane.total)
            for lane in lanes
        ]
        print(table(lane_headers, lane_rows, right=lane_headers[1:]))
    return EXIT_OK


def _lane_with_total(lane: LaneStats) -> dict[str, object]:
    return {"lane": lane.lane, **{state: getattr(lane, state) for state in _STATES}, "total": lane.total}


def _with_total(task: TaskStats) -> dict[str, object]:
    return {
        "task_identifier": task.task_identifier,
        **{state: getattr(task, state) for state in _STATES},
        "total": task.total,
    }


async def _queues_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        queues = await utils.queue_stats()
    async with open_connection(args) as connection:
        lanes = await queue_lanes(connection, schema_of(args))
        paused = await _paused(connection, schema_of(args))
    if args.json:
        print_json(
            [
                {
                    **to_jsonable(q),
                    "lanes": list(lanes.get(q.queue_name, ())),
                    "paused": ("queue", q.queue_name) in paused,
                }
                for q in queues
            ]
        )
        return EXIT_OK
    headers = ("QUEUE", "LANES", "JOBS", "WAITING", "RUNNING", "LOCKED_BY", "LOCKED", "OLDEST_WAITING")
    now = datetime.now(UTC)
    rows = [
        (
            _shown(q.queue_name, ("queue", q.queue_name) in paused),
            ",".join(lanes.get(q.queue_name, ())) or None,
            q.total,
            q.waiting,
            q.running,
            q.locked_by,
            age(q.locked_at, now),
            q.oldest_waiting_age,
        )
        for q in queues
    ]
    print(table(headers, rows, right=("JOBS", "WAITING", "RUNNING")))
    return EXIT_OK


async def _workers_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        workers = await utils.workers()
    if args.json:
        print_json(workers)
        return EXIT_OK
    headers = (
        "WORKER", "LANE", "REGISTERED", "ALIVE", "HOST", "PID", "CONCURRENCY", "JOBS", "QUEUES", "HEARTBEAT", "VERSION"
    )  # fmt: skip
    now = datetime.now(UTC)
    rows = [
        (
            w.worker_id,
            w.lane,
            w.registered,
            "unknown" if w.alive is None else w.alive,
            w.hostname,
            w.pid,
            w.concurrency,
            w.locked_jobs,
            w.locked_queues,
            age(w.last_heartbeat_at, now),
            w.version,
        )
        for w in workers
    ]
    print(table(headers, rows, right=("PID", "CONCURRENCY", "JOBS", "QUEUES")))
    return EXIT_OK


async def _cleanup_command(args: argparse.Namespace) -> int:
    async with open_utils(args) as utils:
        report = await utils.cleanup(args.task or DEFAULT_CLEANUP_TASKS, task_identifiers_to_keep=args.keep)
    if args.json:
        print_json(report)
        return EXIT_OK
    done = {
        "DELETE_PERMAFAILED_JOBS": plural(report.deleted_permafailed_jobs, "permanently failed job"),
        "GC_TASK_IDENTIFIERS": plural(report.deleted_task_identifiers, "unused task identifier"),
        "GC_JOB_QUEUES": plural(report.deleted_job_queues, "empty job queue"),
    }
    for name in report.tasks:
        print(f"{name}: deleted {done[name]}")
    return EXIT_OK


async def _sweep_command(args: argparse.Namespace) -> int:
    import asyncpg

    from backfill.core import sweep

    schema = schema_of(args)
    async with open_connection(args) as connection:
        try:
            report = await sweep(connection, schema, max_recoveries=args.max_recoveries, dry_run=args.dry_run)
        except asyncpg.UndefinedTableError as error:
            raise DatabaseError(
                f"sweep failed: {error} (backfill's tables are missing in schema {schema}: run `backfill migrate`)"
            ) from error
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise DatabaseError(f"sweep failed: {error}") from error
    if args.json:
        print_json(report)
        return EXIT_OK
    if report.skipped:
        note("another sweeper holds the sweep lock for this schema; nothing was looked at")
        return EXIT_OK
    if report.dry_run:
        print("dry run: nothing was changed; a sweep now would do this")
    print(f"dead workers: {_listed(report.dead_workers)}")
    print(f"released jobs: {_listed(report.released_jobs)}")
    print(f"failed as poison pills: {_listed(report.poisoned_jobs)}")
    print(f"unlocked queues: {_listed(report.released_queues)}")
    return EXIT_OK


def _listed(items: list[str] | list[int]) -> str:
    return ", ".join(map(str, items)) if items else "none"
