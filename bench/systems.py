"""The systems under test: how to start each one's driver and how to look at its tables.

Every system lives in a schema of its own in the one benchmark database, so that no worker can take
another system's jobs (Graphile's ``jobs:insert`` notification is database-wide, which only wakes an idle
worker for nothing: systems run one after another).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.results import (
    BACKLOG_DRAIN,
    CPU_PER_1000,
    DRAIN,
    ENQUEUE,
    FAST_IDLE_P50,
    IDLE_DB_CPU,
    LATENCY_P50,
    SINGLE_ENQUEUE,
)
from tests.support.node import NodeToolchain, find_node_toolchain

NODE_DRIVER = Path(__file__).resolve().parent / "node" / "driver.mjs"
REPO_ROOT = Path(__file__).resolve().parents[1]


class SystemUnavailable(Exception):
    """A system cannot be run on this machine (e.g. the Node toolchain is missing)."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Tables:
    """SQL over a system's tables: what to empty between phases and how to tell work is left."""

    clean: str
    # Cheap probe run every few milliseconds during a drain: one index lookup, not a count.
    any_pending: str
    count_pending: str
    vacuum: tuple[str, ...]
    # Insert $1 runnable no-op jobs, due in $2 seconds, straight into the table (None: no such shortcut).
    # For the phases that time a worker, not enqueueing: a million rows take seconds this way.
    insert_backlog: str | None = None


def _graphile_tables(schema: str) -> Tables:
    s = quote_ident(schema)
    # Completed Graphile jobs are deleted, and no-op jobs never fail: any row left is work left.
    return Tables(
        clean=f"truncate {s}._private_jobs, {s}._private_job_queues",
        any_pending=f"select 1 from {s}._private_jobs order by id limit 1",
        count_pending=f"select count(*) from {s}._private_jobs",
        vacuum=(f"{s}._private_jobs",),
        # The rows add_jobs would write for {"n": ...} payloads at the default priority (no queue, no key,
        # no flags); Graphile has no trigger on the table, so nothing else happens on insert.
        insert_backlog=f"""
            with task as (
                insert into {s}._private_tasks (identifier) values ('noop')
                on conflict (identifier) do update set identifier = excluded.identifier
                returning id
            )
            insert into {s}._private_jobs (task_id, payload, run_at)
            select task.id, json_build_object('n', n), now() + make_interval(secs => $2::float8)
            from task, generate_series(1, $1::int) n""",
    )


def _procrastinate_tables(schema: str) -> Tables:
    s = quote_ident(schema)
    # procrastinate keeps succeeded jobs by default, so only todo/doing rows are work left.
    pending = f"from {s}.procrastinate_jobs where status in ('todo', 'doing')"
    return Tables(
        clean=f"truncate {s}.procrastinate_jobs cascade",
        any_pending=f"select 1 {pending} order by id limit 1",
        count_pending=f"select count(*) {pending}",
        vacuum=(f"{s}.procrastinate_jobs",),
    )


def _pgqueuer_tables(schema: str) -> Tables:
    s = quote_ident(schema)
    # pgqueuer moves finished jobs to its log table.
    return Tables(
        clean=f"truncate {s}.pgqueuer, {s}.pgqueuer_log, {s}.pgqueuer_statistics",
        any_pending=f"select 1 from {s}.pgqueuer order by id limit 1",
        count_pending=f"select count(*) from {s}.pgqueuer",
        vacuum=(f"{s}.pgqueuer",),
    )


# What each system is measured on (a measurement's first key stands for its row group).
_WORKER_LIBRARY = frozenset({ENQUEUE, SINGLE_ENQUEUE, DRAIN, CPU_PER_1000, LATENCY_P50})
_GRAPHILE_WORKER = _WORKER_LIBRARY | {IDLE_DB_CPU, BACKLOG_DRAIN}
MEASURED = {
    "backfill": _GRAPHILE_WORKER,
    # Lanes: the runner's Fast and Bulk; for Node, two runners in one process (see bench/node/driver.mjs).
    "backfill-runner": _GRAPHILE_WORKER | {FAST_IDLE_P50},
    # The runner with an unrelated queue and task paused (issue #12): the same rows, to compare with the above.
    "backfill-runner-paused": _GRAPHILE_WORKER | {FAST_IDLE_P50},
    "node": _GRAPHILE_WORKER | {FAST_IDLE_P50},
    # The peers' tables have no backlog shortcut here, and issue #11 states no target about them.
    "procrastinate": _WORKER_LIBRARY,
    "pgqueuer": _WORKER_LIBRARY,
    # SQL only: there is no library to enqueue through, to time the CPU of, or to wait on LISTEN.
    "postgres": frozenset({DRAIN, BACKLOG_DRAIN}),
}


@dataclass(frozen=True)
class System:
    name: str
    schema: str
    tables: Tables
    node: NodeToolchain | None = None  # set for the Node system only

    def measures(self, measurement: str) -> bool:
        return measurement in MEASURED[self.name]

    def argv(self, command: str, dsn: str, **options: int | float) -> list[str]:
        args = [command, "--dsn", dsn, "--schema", self.schema]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        if self.node is not None:
            return self.node.command(NODE_DRIVER, *args)
        return [sys.executable, "-m", "bench.drivers", self.name, *args]

    def env(self) -> dict[str, str]:
        if self.node is not None:
            return self.node.env()
        env = dict(os.environ)
        # Drivers import bench.* and tests.support.*, wherever the harness was started from.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env


ALL_SYSTEMS = ("backfill", "backfill-runner", "backfill-runner-paused", "node", "procrastinate", "pgqueuer", "postgres")


def make_system(name: str, schema: str | None = None) -> System:
    """The system called ``name`` (in schema ``bench_<name>`` unless told); raises :class:`SystemUnavailable`
    if it cannot run here."""
    schema = schema or f"bench_{name.replace('-', '_')}"
    if name in ("backfill", "backfill-runner", "backfill-runner-paused", "postgres"):
        return System(name, schema, _graphile_tables(schema))
    if name == "node":
        toolchain = find_node_toolchain()
        if toolchain is None:
            raise SystemUnavailable("Node graphile-worker 0.18.0 is not installed in .cache/node and npm is missing")
        return System(name, schema, _graphile_tables(schema), node=toolchain)
    if name == "procrastinate":
        return System(name, schema, _procrastinate_tables(schema))
    if name == "pgqueuer":
        return System(name, schema, _pgqueuer_tables(schema))
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(ALL_SYSTEMS)}")
