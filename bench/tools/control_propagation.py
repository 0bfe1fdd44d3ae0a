"""How long a pause, a resume and a cancel take to reach runners in other processes (issue #12).

    .venv/bin/python -m bench.tools.control_propagation --database-url URL --rounds 20 [--poll-seconds 1]

Starts two ``backfill run`` processes (JSON logs, the tasks of tests/integration/worker_support/control_tasks.py)
on a fresh schema, then, round after round, from this process:

* **pause / resume**: the time from the call of ``pause()`` (``resume()``; its own statement included) to the
  log line in which each runner says it applied it ("pauses in force" / "every pause lifted"), from the line's
  own timestamp; the later runner counts;
* **cancel**: with a job running in one of them (an ``async def`` handler asleep, or a ``def`` one watching its
  abort signal), the time from the call of ``cancel_jobs()`` to the moment the handler saw it (the time it
  wrote to its marker file).

``--without-notify`` writes the same rows with plain SQL and no NOTIFY, as if every notification were lost: what
the runners' poll alone takes (bounded by ``--poll-seconds``). Both processes run on this machine, so their
clocks are this clock. Prints one line per measurement kind: median, p95 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import asyncpg

from backfill.client.async_client import BackfillClient
from backfill.control import cancel_jobs, pause, resume
from backfill.core import SchemaName
from backfill.migrations import migrate_all

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "bench_control"
# What pause(), resume() and cancel_jobs() write, without their NOTIFY (a lost notification).
_SILENT_PAUSE = f"insert into {SCHEMA}.backfill_pauses (kind, name, paused_by) values ('task', 'bench.paused', 'bench')"
_SILENT_RESUME = f"delete from {SCHEMA}.backfill_pauses where kind = 'task' and name = 'bench.paused'"
_SILENT_CANCEL = f"""
    insert into {SCHEMA}.backfill_cancellations
      (job_id, task_identifier, priority, attempts, max_attempts, state, worker_id, requested_by)
    select j.id, t.identifier, j.priority, j.attempts, j.max_attempts, 'requested', j.locked_by, 'bench'
      from {SCHEMA}._private_jobs as j join {SCHEMA}._private_tasks as t on t.id = j.task_id
     where j.id = $1"""


class Runner:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, object]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def logged_after(self, text: str, since: float) -> float | None:
        """The time (epoch seconds) of the first line after ``since`` whose event starts with ``text``."""
        for line in self.lines:
            event, stamp = str(line.get("event", "")), line.get("timestamp")
            if event.startswith(text) and isinstance(stamp, str):
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                if at >= since:
                    return at
        return None

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        self._reader.cancel()


async def _start(dsn: str, poll_seconds: float) -> Runner:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "GRAPHILE_"))}
    env.update(
        DATABASE_URL=dsn,
        GRAPHILE_WORKER_SCHEMA=SCHEMA,
        BACKFILL_TASK_MODULES="tests.integration.worker_support.control_tasks",
        BACKFILL_LOG_FORMAT="json",
        BACKFILL_CONTROL_POLL_SECONDS=str(poll_seconds),
        PYTHONPATH=str(REPO_ROOT),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backfill", "run", "--env-file", os.devnull,
        cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return Runner(process)


async def _until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the runners never showed it")


def _summary(name: str, values_ms: list[float]) -> str:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    median = statistics.median(ordered)
    return f"{name:<18} n={len(ordered):<3} median {median:7.1f} ms  p95 {p95:7.1f} ms  max {ordered[-1]:7.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument(
        "--without-notify",
        action="store_true",
        help="write the pauses and requests with plain SQL, no NOTIFY: the time the poll alone takes",
    )
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("give --database-url or DATABASE_URL")
    schema = SchemaName(SCHEMA)
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=4)
    await pool.execute(f"drop schema if exists {SCHEMA} cascade")
    await migrate_all(pool, schema)
    runners = [await _start(args.database_url, args.poll_seconds) for _ in range(2)]
    results: dict[str, list[float]] = {"pause": [], "resume": [], "cancel async def": [], "cancel def": []}
    try:
        for runner in runners:
            await _until(partial(_all_logged, [runner], "backfill runner started", 0.0))
        client = BackfillClient(pool, schema=schema)
        with tempfile.TemporaryDirectory() as directory:
            for round_number in range(args.rounds):
                for verb, text in (("pause", "pauses in force"), ("resume", "every pause lifted")):
                    started = time.time()
                    if args.without_notify:  # as if the notification were lost: only the runners' poll sees it
                        statement = _SILENT_PAUSE if verb == "pause" else _SILENT_RESUME
                        await pool.execute(statement)
                    elif verb == "pause":
                        await pause(pool, schema, task="bench.paused", by="bench")
                    else:
                        await resume(pool, schema, task="bench.paused")
                    await _until(partial(_all_logged, runners, text, started))
                    applied = max(r.logged_after(text, started) or 0.0 for r in runners)
                    results[verb].append((applied - started) * 1000)
                for task, kind in (("control.hang", "cancel async def"), ("control.hang_sync", "cancel def")):
                    name = f"{task}-{round_number}"
                    job = await client.enqueue_bulk(task, {"dir": directory, "name": name})
                    started_file = Path(directory, f"{name}.started")
                    await _until(partial(_exists, started_file))
                    asked = time.time()
                    if args.without_notify:
                        await pool.execute(_SILENT_CANCEL, job.id)
                    else:
                        await cancel_jobs(pool, schema, [job.id], by="bench")
                    marker = Path(directory, f"{name}.cancelled")
                    await _until(partial(_exists, marker))
                    seen = float((await asyncio.to_thread(marker.read_text)).split()[0])
                    results[kind].append((seen - asked) * 1000)
    finally:
        for runner in runners:
            await runner.stop()
        await pool.execute(f"drop schema if exists {SCHEMA} cascade")
        await pool.close()
    how = "poll only (no NOTIFY)" if args.without_notify else "NOTIFY"
    print(f"propagation across processes, 2 runners, BACKFILL_CONTROL_POLL_SECONDS={args.poll_seconds:g}, {how}")
    for name, values in results.items():
        print(_summary(name, values))


async def _all_logged(runners: list[Runner], text: str, since: float) -> bool:
    return all(runner.logged_after(text, since) is not None for runner in runners)


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


if __name__ == "__main__":
    asyncio.run(main())
