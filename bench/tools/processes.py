"""Measures ``backfill run`` as a whole, in processes: drain of no-op jobs, throughput of a CPU-bound task and
the start lag of jobs enqueued one at a time, for ``--processes N`` and for the event loop a runner uses.

    .venv/bin/python -m bench.tools.processes --database-url URL --processes 1 --scenario drain --jobs 30000
    .venv/bin/python -m bench.tools.processes --database-url URL --processes 2 --scenario cpu --jobs 2000

Each round: start ``backfill run`` (with ``--processes N``) on an empty jobs table, wait for ``/readyz``, then
enqueue every job in one transaction and time from its commit until no job is left (probed every 10 ms). The
runner's CPU seconds over that window (every process of its tree, from /proc) are printed too: they are far
less sensitive to other work on a shared machine than the wall clock. ``--scenario latency`` enqueues jobs one
at a time, ``--gap-ms`` apart, and prints the start lag's p50 and p99. One JSON line per round on stdout.
``--uvloop`` runs the processes on uvloop (through a sitecustomize that installs its policy), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

from backfill.core import JobSpec, add_job, add_jobs
from backfill.runner.supervisor import free_loopback_port
from bench.tools.processes_tasks import LAG_FILE_VARIABLE

REPO_ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")
_UVLOOP_SITE = "import uvloop\nuvloop.install()\n"


def _tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(times.get(pid, 0.0) for pid in tree)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return int(response.status) == 200
    except OSError:
        return False


async def _round(args: argparse.Namespace, site: str | None) -> dict[str, Any]:
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    assert pool is not None
    port = free_loopback_port()
    lag_file = tempfile.NamedTemporaryFile(prefix="procbench-lag-", delete=False)  # noqa: SIM115
    lag_file.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env.update(
        DATABASE_URL=args.database_url,
        BACKFILL_TASK_MODULES="bench.tools.processes_tasks",
        BACKFILL_METRICS_PORT=str(port),
        BACKFILL_METRICS_HOST="127.0.0.1",
        BACKFILL_LOG_LEVEL="WARNING",
        BACKFILL_SUCCESS_LOG="off",
        BACKFILL_PROCESSES=str(args.processes),
        FAST_QUEUE_CONCURRENCY="4",
        BULK_QUEUE_CONCURRENCY=str(args.concurrency),
        PYTHONPATH=os.pathsep.join(filter(None, [site, str(REPO_ROOT)])),
    )
    env[LAG_FILE_VARIABLE] = lag_file.name
    with contextlib.suppress(asyncpg.UndefinedTableError):  # the runner installs the schema
        await pool.execute("delete from graphile_worker._private_jobs")
    runner = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backfill", "run", "--env-file", os.devnull, cwd=REPO_ROOT, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(_ready, port):
            if time.monotonic() > deadline or runner.returncode is not None:
                raise RuntimeError("the runner did not become ready")
            await asyncio.sleep(0.05)
        result: dict[str, Any] = {"processes": args.processes, "scenario": args.scenario, "uvloop": args.uvloop}
        if args.scenario == "latency":
            for _ in range(args.jobs):
                await add_job(pool, "procbench.stamp", {"t": time.time()}, priority=5)
                await asyncio.sleep(args.gap_ms / 1000)
            await _wait_empty(pool, 60)
            lags = sorted(
                float(line) * 1000 for line in (await asyncio.to_thread(Path(lag_file.name).read_text)).split()
            )
            result.update(
                jobs=len(lags), p50_ms=statistics.median(lags), p99_ms=lags[min(len(lags) - 1, int(len(lags) * 0.99))]
            )
        else:
            task, payload = (
                ("procbench.noop", {}) if args.scenario == "drain" else ("procbench.cpu", {"rounds": args.rounds})
            )
            specs = [JobSpec(task, payload, priority=5) for _ in range(args.jobs)]
            cpu_before = _tree_cpu_seconds(runner.pid)
            async with pool.acquire() as connection, connection.transaction():
                await add_jobs(connection, specs)
            started = time.monotonic()
            await _wait_empty(pool, 600)
            seconds = time.monotonic() - started
            cpu = _tree_cpu_seconds(runner.pid) - cpu_before
            result.update(
                jobs=args.jobs,
                seconds=round(seconds, 3),
                jobs_per_second=round(args.jobs / seconds, 1),
                runner_cpu_seconds=round(cpu, 3),
                cpu_us_per_job=round(cpu / args.jobs * 1e6, 1),
            )
        return result
    finally:
        if runner.returncode is None:
            runner.send_signal(signal.SIGTERM)
            await asyncio.wait_for(runner.wait(), 60)
        await pool.close()
        os.unlink(lag_file.name)


async def _wait_empty(pool: asyncpg.Pool[Any], limit: float) -> None:
    deadline = time.monotonic() + limit
    while await pool.fetchval("select exists (select 1 from graphile_worker._private_jobs)"):
        if time.monotonic() > deadline:
            raise RuntimeError("jobs left after the limit")
        await asyncio.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--scenario", choices=("drain", "cpu", "latency"), default="drain")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=1500, help="sha256 rounds per CPU-bound job")
    parser.add_argument("--concurrency", type=int, default=24, help="BULK_QUEUE_CONCURRENCY of each process")
    parser.add_argument("--gap-ms", type=float, default=5.0)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="procbench-site-") as site_dir:
        site = None
        if args.uvloop:
            Path(site_dir, "sitecustomize.py").write_text(_UVLOOP_SITE)
            site = site_dir
        print(json.dumps(asyncio.run(_round(args, site))), flush=True)


if __name__ == "__main__":
    main()
