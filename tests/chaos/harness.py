"""The chaos harness: worker processes, the ledger, and the checker every chaos test ends with.

Scale: ``BACKFILL_CHAOS_SCALE`` (float, default 1) multiplies job counts, process counts and fault counts, so
the same tests run small in CI and long in a soak (``BACKFILL_CHAOS_SCALE=10``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import secrets
import signal
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from backfill.core import JobSpec, add_jobs
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).parents[2]
SCALE = float(os.environ.get("BACKFILL_CHAOS_SCALE", "1"))
JOBS = "graphile_worker._private_jobs"
QUEUES = "graphile_worker._private_job_queues"
# Interpreter start-up, imports and the worker's start-up statements, on a loaded 2-core machine.
START_TIMEOUT = 30.0

LEDGER_DDL = """
    create table public.chaos_ledger (
      seq bigint generated always as identity primary key,
      run_id text not null unique,
      job_key text not null,
      job_id bigint not null,
      task text not null,
      attempt int not null,
      max_attempts int not null,
      pid int not null,
      worker_id text not null,
      queue_name text,
      started_at timestamptz not null default clock_timestamp(),
      finished_at timestamptz,
      outcome text
    );
    create index on public.chaos_ledger (job_key);
    create table public.chaos_processes (
      worker_id text primary key,
      pid int not null,
      ready_at timestamptz not null default clock_timestamp()
    );
"""


def scaled(count: float, *, minimum: int = 1) -> int:
    """``count`` times ``BACKFILL_CHAOS_SCALE``, at least ``minimum``."""
    return max(minimum, math.ceil(count * SCALE))


async def create_ledger(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute(LEDGER_DDL)


def with_application_name(dsn: str, name: str) -> str:
    """``dsn`` with ``application_name`` set, so ``pg_stat_activity`` tells which process a backend serves."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "application_name"]
    query.append(("application_name", name))
    return urlunsplit(parts._replace(query=urlencode(query)))


# -- processes -----------------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``tests.chaos.worker_process`` subprocess."""

    worker_id: str
    process: asyncio.subprocess.Process
    stderr_path: Path
    args: list[str]
    exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def send(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    def kill(self) -> None:
        self.send(signal.SIGKILL)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        self.exit_code = await asyncio.wait_for(self.process.wait(), timeout)
        return self.exit_code

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def summary(self) -> dict[str, Any] | None:
        for line in reversed(self.stderr().splitlines()):
            if line.startswith("CHAOS-SUMMARY "):
                parsed: dict[str, Any] = json.loads(line.removeprefix("CHAOS-SUMMARY "))
                return parsed
        return None


class Fleet:
    """Starts, signals and always cleans up worker processes for one test."""

    def __init__(self, dsn: str, log_dir: Path) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.processes: list[WorkerProcess] = []
        self._counter = 0

    async def start(self, count: int = 1, *, ready: bool = True, **options: Any) -> list[WorkerProcess]:
        """Start ``count`` workers with ``options`` (``concurrency=4``, ``dead_after=2`` … as CLI flags)."""
        started = []
        for _ in range(count):
            self._counter += 1
            worker_id = f"chaos-w{self._counter}-{secrets.token_hex(4)}"
            args = ["--dsn", with_application_name(self.dsn, worker_id), "--worker-id", worker_id]
            for name, value in options.items():
                flag = "--" + name.replace("_", "-")
                args += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
            stderr_path = self.log_dir / f"{worker_id}.stderr"
            with stderr_path.open("wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.chaos.worker_process",
                    *args,
                    cwd=REPO_ROOT,
                    env=_environment(),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=stderr,
                )
            worker = WorkerProcess(worker_id, process, stderr_path, args)
            self.processes.append(worker)
            started.append(worker)
        if ready:
            await self.wait_ready(started)
        return started

    async def wait_ready(self, workers: Sequence[WorkerProcess]) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:

            async def all_ready() -> bool:
                for worker in workers:
                    if not worker.alive:
                        raise AssertionError(
                            f"worker {worker.worker_id} exited on start-up:\n{worker.stderr()[-3000:]}"
                        )
                ids = [w.worker_id for w in workers]
                count = await conn.fetchval(
                    "select count(*) from public.chaos_processes where worker_id = any($1)", ids
                )
                return bool(count == len(workers))

            await wait_for(all_ready, timeout=START_TIMEOUT, interval=0.05, message="worker processes ready")
        finally:
            await conn.close()

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.processes if w.alive]

    async def stop(self, workers: Iterable[WorkerProcess] | None = None, *, timeout: float = 30.0) -> dict[str, int]:  # noqa: ASYNC109
        """SIGTERM the workers (default: every live one) and wait; their exit codes by worker id."""
        chosen = [w for w in (self.alive if workers is None else workers) if w.alive]
        for worker in chosen:
            worker.send(signal.SIGTERM)
        codes = await asyncio.gather(*(w.wait(timeout) for w in chosen))
        return {w.worker_id: code for w, code in zip(chosen, codes, strict=True)}

    async def kill(self, worker: WorkerProcess) -> None:
        worker.kill()
        await worker.wait(10)

    async def cleanup(self) -> None:
        for worker in self.processes:
            if worker.alive:
                worker.send(signal.SIGCONT)
                worker.kill()
        for worker in self.processes:
            with contextlib.suppress(Exception):
                await worker.wait(10)

    def stderr_tails(self, limit: int = 2000) -> str:
        return "\n".join(f"--- {w.worker_id} (exit {w.exit_code}) ---\n{w.stderr()[-limit:]}" for w in self.processes)


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


# -- jobs ------------------------------------------------------------------------------------------------------


def new_key(prefix: str = "k") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def chaos_spec(
    key: str,
    *,
    queue: str | None = None,
    max_attempts: int | None = None,
    priority: int | None = None,
    timeout: float | None = None,
    task: str = "chaos_job",
    **payload: Any,
) -> JobSpec:
    """A ``chaos_job`` keyed ``key`` (payload ``key`` and ``job_key``) that does what ``payload`` says."""
    return JobSpec(
        task,
        {"key": key, "queue": queue, **payload},
        queue_name=queue,
        job_key=key,
        max_attempts=max_attempts,
        priority=priority,
        timeout=timeout,
    )


async def enqueue(conn: asyncpg.Connection[Any], specs: Sequence[JobSpec], *, batch: int = 500) -> set[str]:
    """Enqueue ``specs`` (in batches); the set of their job keys."""
    for start in range(0, len(specs), batch):
        await add_jobs(conn, specs[start : start + batch])
    return {spec.job_key for spec in specs if spec.job_key is not None}


async def db_now(conn: asyncpg.Connection[Any]) -> datetime:
    value: datetime = await conn.fetchval("select clock_timestamp()")
    return value


async def locked_counts(conn: asyncpg.Connection[Any]) -> tuple[int, int]:
    row = await conn.fetchrow(
        f"select (select count(*) from {JOBS} where locked_by is not null) as jobs,"
        f" (select count(*) from {QUEUES} where locked_by is not null) as queues"
    )
    assert row is not None
    return int(row["jobs"]), int(row["queues"])


async def wait_all_done(conn: asyncpg.Connection[Any], keys: Iterable[str], *, timeout: float, fleet: Fleet) -> None:  # noqa: ASYNC109
    """Wait until no job row is left for ``keys`` (completed jobs are deleted)."""
    wanted = list(keys)

    async def none_left() -> bool:
        left = await conn.fetchval(f"select count(*) from {JOBS} where key = any($1)", wanted)
        return bool(left == 0)

    try:
        await wait_for(none_left, timeout=timeout, interval=0.1, message=f"all {len(wanted)} jobs done")
    except AssertionError:
        left = await conn.fetch(
            f"select key, attempts, max_attempts, locked_by, run_at, last_error from {JOBS}"
            " where key = any($1) order by id limit 10",
            wanted,
        )
        raise AssertionError(f"jobs left: {[dict(r) for r in left]}\n{fleet.stderr_tails()}") from None


async def jobs_locked_by(conn: asyncpg.Connection[Any], worker_id: str) -> set[str]:
    rows = await conn.fetch(f"select key from {JOBS} where locked_by = $1", worker_id)
    return {str(r["key"]) for r in rows}


# -- the ledger checker -------------------------------------------------------------------------------------


@dataclass
class LedgerRow:
    seq: int
    job_key: str
    job_id: int
    attempt: int
    max_attempts: int
    pid: int
    worker_id: str
    queue_name: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None


@dataclass
class Report:
    """What a chaos test found; ``print()``-ed at the end of every test."""

    name: str
    jobs: int
    faults: int
    lost: int
    duplicates: int
    runs: int
    failed_permanently: int = 0
    waiting: int = 0
    recovery_seconds: float | None = None
    elapsed_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        figures = {
            "jobs": self.jobs,
            "faults": self.faults,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "runs": self.runs,
            "failed_permanently": self.failed_permanently,
            "waiting": self.waiting,
            "recovery_s": None if self.recovery_seconds is None else round(self.recovery_seconds, 2),
            "elapsed_s": round(self.elapsed_seconds, 2),
            "scale": SCALE,
            **self.extra,
        }
        return f"CHAOS {self.name}: " + json.dumps(figures)


async def read_ledger(conn: asyncpg.Connection[Any]) -> list[LedgerRow]:
    rows = await conn.fetch(
        "select seq, job_key, job_id, attempt, max_attempts, pid, worker_id, queue_name, started_at, finished_at,"
        " outcome from public.chaos_ledger order by seq"
    )
    return [LedgerRow(**dict(row)) for row in rows]


async def check_ledger(
    conn: asyncpg.Connection[Any],
    name: str,
    keys: Iterable[str],
    *,
    faults: int = 0,
    excused: Iterable[str] = (),
    max_duplicates: int = 0,
    expect_failed: Iterable[str] = (),
    expect_waiting: Iterable[str] = (),
    started: float | None = None,
    recovery_seconds: float | None = None,
) -> Report:
    """Check the ledger against what was enqueued (see docs/chaos.md) and return the figures.

    * every key of ``keys`` finished successfully (outcome ``ok``) and its job row is gone, except those of
      ``expect_failed`` (row kept, attempts used up, ``last_error`` set) and ``expect_waiting`` (row kept,
      untouched: no run, no lock);
    * a key ran more than once (more starts than planned failures + 1) only if it is in ``excused`` or the
      number of such extra runs is at most ``max_duplicates``;
    * no job or queue is left locked;
    * no attempt ran above its max_attempts, and no job row shows more attempts than its max.

    Call it after every worker has stopped.
    """
    all_keys = set(keys)
    failed_keys = set(expect_failed)
    waiting_keys = set(expect_waiting)
    excused_keys = set(excused)
    ledger = [row for row in await read_ledger(conn) if row.job_key in all_keys]
    by_key: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in ledger:
        by_key[row.job_key].append(row)
    job_rows = {
        str(r["key"]): r
        for r in await conn.fetch(
            f"select key, attempts, max_attempts, last_error, locked_by, payload::text as payload from {JOBS}"
            " where key = any($1)",
            list(all_keys),
        )
    }
    problems: list[str] = []

    lost = []
    for key in sorted(all_keys - failed_keys - waiting_keys):
        succeeded = any(row.outcome == "ok" for row in by_key.get(key, []))
        if key in job_rows or not succeeded:
            lost.append(key)
    if lost:
        details = [(k, len(by_key.get(k, [])), dict(job_rows[k]) if k in job_rows else None) for k in lost[:5]]
        problems.append(f"{len(lost)} job(s) lost or unfinished, e.g. (key, runs, job row): {details}")

    for key in sorted(failed_keys):
        job = job_rows.get(key)
        if job is None or job["attempts"] != job["max_attempts"] or not job["last_error"]:
            problems.append(f"{key} should be permanently failed with its error; job row: {job and dict(job)}")
    for key in sorted(waiting_keys):
        job = job_rows.get(key)
        if job is None or job["attempts"] != 0 or job["locked_by"] is not None or by_key.get(key):
            problems.append(
                f"{key} should still be waiting untouched; job row {job and dict(job)}, runs {by_key.get(key)}"
            )

    extra_runs: Counter[str] = Counter()
    for key, rows in by_key.items():
        planned = sum(1 for row in rows if row.outcome == "planned_failure")
        extra = len(rows) - planned - 1
        if extra > 0 and key not in failed_keys:
            extra_runs[key] = extra
    duplicates = sum(extra_runs.values())
    unexcused = {k: n for k, n in extra_runs.items() if k not in excused_keys}
    if sum(unexcused.values()) > max_duplicates:
        problems.append(
            f"{sum(unexcused.values())} unexcused duplicate run(s) (allowed {max_duplicates}): "
            f"{dict(list(unexcused.items())[:10])}"
        )

    jobs_locked, queues_locked = await locked_counts(conn)
    if jobs_locked or queues_locked:
        problems.append(f"left locked: {jobs_locked} job(s), {queues_locked} queue(s)")

    over = [row for row in ledger if row.attempt > row.max_attempts]
    if over:
        problems.append(f"{len(over)} attempt(s) ran above max_attempts, e.g. {over[:3]}")
    over_rows = await conn.fetchval(f"select count(*) from {JOBS} where attempts > max_attempts")
    if over_rows:
        problems.append(f"{over_rows} job row(s) with attempts > max_attempts")

    report = Report(
        name=name,
        jobs=len(all_keys),
        faults=faults,
        lost=len(lost),
        duplicates=duplicates,
        runs=len(ledger),
        failed_permanently=len(failed_keys),
        waiting=len(waiting_keys),
        elapsed_seconds=0.0 if started is None else time.monotonic() - started,
        recovery_seconds=recovery_seconds,
        extra={"unexcused_duplicates": sum(unexcused.values())},
    )
    print(report.line())
    for key in list(extra_runs)[:3]:
        runs = [
            (r.worker_id, r.attempt, r.outcome, r.started_at.time(), r.finished_at and r.finished_at.time())
            for r in by_key[key]
        ]
        print(f"  duplicate {key}{' (excused)' if key in excused_keys else ''}: {runs}")
    assert not problems, f"{name}: " + "\n".join(problems)
    return report


def serial_overlaps(ledger: Sequence[LedgerRow]) -> list[tuple[LedgerRow, LedgerRow]]:
    """Pairs of runs of one named queue whose [started_at, finished_at] intervals overlap."""
    by_queue: dict[str, list[LedgerRow]] = defaultdict(list)
    for row in ledger:
        if row.queue_name is not None:
            by_queue[row.queue_name].append(row)
    overlaps = []
    for rows in by_queue.values():
        rows.sort(key=lambda r: r.started_at)
        for previous, current in itertools.pairwise(rows):
            if previous.finished_at is None or current.started_at < previous.finished_at:
                overlaps.append((previous, current))
    return overlaps
