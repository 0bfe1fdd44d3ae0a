"""Cron: a Node graphile-worker 0.18 and backfill sharing one crontab schedule each minute exactly once.

backfill schedules the older minutes of an every-minute item (some as fill, one on time); then a Node worker
with the same crontab line starts, and its start-up fill must pick up exactly where backfill left off,
reading backfill's ``_private_known_crontabs`` row. The jobs of both sides must be indistinguishable apart
from their minute: same task, same payload bytes, same ``_cron`` shape.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backfill.core.events import Events
from backfill.core.schema import SchemaName
from backfill.core.upkeep.cron import CronScheduler
from backfill.core.upkeep.crontab import floor_minute, parse_crontab
from tests.compat.nodejs import NodeRunner, node_connection_string

pytestmark = pytest.mark.compat

KNOWN = "graphile_worker._private_known_crontabs"
LINE = '* * * * * cron_compat ?id=compat_every_minute&fill=10m {"source": "shared", "n": [1, "é"]}'

# Starts a Node worker pool with the crontab given in argv[2], waits for its cron to have registered and
# filled (the "cron:started" event), prints when it started, and stops. Its task list is empty, so it runs
# none of the jobs: they stay in the table for the test to read.
NODE_SCRIPT = """
import { EventEmitter } from "node:events";
import { pathToFileURL } from "node:url";

const { run, Logger } = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);
const config = JSON.parse(process.argv[2]);
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") process.stderr.write(`[${level}] ${message}\\n`);
});
const events = new EventEmitter();
const started = new Promise((resolve) => events.once("cron:started", resolve));
const runner = await run({
  connectionString: config.connectionString,
  concurrency: 1,
  pollInterval: 60000,
  noHandleSignals: true,
  logger,
  events,
  taskList: {},
  crontab: config.crontab,
});
const { start } = await started;
await runner.stop();
process.stdout.write(JSON.stringify({ start: start.toISOString() }) + "\\n");
"""


async def _cron_jobs(conn: asyncpg.Connection[Any]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """
            select j.id, t.identifier as task, j.payload::text as payload, j.run_at
              from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
             order by j.run_at, j.id
            """
        )
    )


async def test_node_fills_from_where_backfill_left_off_exactly_once(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], node: NodeRunner, tmp_path: Path
) -> None:
    items = parse_crontab(LINE)
    scheduler = CronScheduler(pool, SchemaName("graphile_worker"), items, events=Events(), worker_id="py")
    this_minute = floor_minute(datetime.now(UTC))
    # Known for an hour, last run 13 minutes ago: a backfill worker that started 5 minutes ago filled the
    # minutes since (as backfilled), then scheduled the next minute on time, and then went away.
    await conn.execute(
        f"insert into {KNOWN} values ('compat_every_minute', $1, $2)",
        this_minute - timedelta(hours=1),
        this_minute - timedelta(minutes=13),
    )
    python_start = this_minute - timedelta(minutes=5)
    filled = await scheduler.backfill(python_start)
    on_time = await scheduler.schedule_minute(python_start)
    assert (len(filled), len(on_time)) == (7, 1)  # minutes -12..-6 filled, -5 on time

    script = tmp_path / "cron.mjs"
    script.write_text(NODE_SCRIPT)
    config = {"connectionString": node_connection_string(database_url), "crontab": LINE}
    output = await node.run_argv(node.toolchain.command(script, json.dumps(config)))
    node_start = datetime.fromisoformat(json.loads(output.strip().splitlines()[-1])["start"])

    rows = await _cron_jobs(conn)
    minutes = [row["run_at"] for row in rows]
    # One job per minute, with no gap and no repeat, from backfill's first to the minute before Node started.
    first = this_minute - timedelta(minutes=12)
    assert minutes == [first + timedelta(minutes=n) for n in range(len(minutes))]
    assert minutes[-1] == floor_minute(node_start) - timedelta(minutes=1) or minutes[-1] == floor_minute(node_start)
    assert len(minutes) >= 12
    cron = [json.loads(row["payload"])["_cron"] for row in rows]
    assert [c["ts"] for c in cron] == [m.strftime("%Y-%m-%dT%H:%M:%S.000Z") for m in minutes]
    assert [c["backfilled"] for c in cron] == [True] * 7 + [False] + [True] * (len(rows) - 8)
    assert {row["task"] for row in rows} == {"cron_compat"}

    # Node's jobs (after -5) and backfill's are byte for byte the same once the minute is blanked out.
    def shape(payload: str) -> str:
        return re.sub(r'"ts":"[^"]+"', '"ts":"…"', payload)

    node_payloads = {shape(row["payload"]) for row in rows[8:]}
    python_payloads = {shape(row["payload"]) for row in rows[:7]}
    assert node_payloads == python_payloads == {'{"source":"shared","n":[1,"é"],"_cron":{"ts":"…","backfilled":true}}'}

    # And backfill, starting again now, finds nothing left to schedule for those minutes.
    assert await scheduler.register_and_backfill(datetime.now(UTC)) == []
    assert await scheduler.schedule_minute(minutes[-1]) == []
    assert await conn.fetchval(f"select last_execution from {KNOWN}") == minutes[-1]


async def test_backfill_fills_from_where_node_left_off(
    database_url: str, pool: asyncpg.Pool[Any], conn: asyncpg.Connection[Any], node: NodeRunner, tmp_path: Path
) -> None:
    """The other direction: Node registers the item and fills; backfill then fills only what came after."""
    this_minute = floor_minute(datetime.now(UTC))
    # Node sees a known item last run 4 minutes ago and fills the 3 minutes since.
    await conn.execute(
        f"insert into {KNOWN} values ('compat_every_minute', $1, $2)",
        this_minute - timedelta(hours=1),
        this_minute - timedelta(minutes=4),
    )
    script = tmp_path / "cron.mjs"
    script.write_text(NODE_SCRIPT)
    config = {"connectionString": node_connection_string(database_url), "crontab": LINE}
    await node.run_argv(node.toolchain.command(script, json.dumps(config)))
    node_minutes = [row["run_at"] for row in await _cron_jobs(conn)]
    assert node_minutes[:3] == [this_minute - timedelta(minutes=n) for n in (3, 2, 1)]

    scheduler = CronScheduler(pool, SchemaName("graphile_worker"), parse_crontab(LINE), events=Events(), worker_id="py")
    later = node_minutes[-1] + timedelta(minutes=3, seconds=1)
    added = await scheduler.register_and_backfill(later)
    rows = await _cron_jobs(conn)
    assert len(added) == 3
    assert [row["run_at"] for row in rows] == [node_minutes[0] + timedelta(minutes=n) for n in range(len(rows))]


# Prints, for each pattern in argv[2] (a JSON list), whether Graphile's own matcher fires at each of the UTC
# minutes described by argv[3]: {"start": ISO timestamp, "step": minutes, "count": n}.
MATCH_SCRIPT = """
import { pathToFileURL } from "node:url";

const { parseCrontab } = await import(pathToFileURL(process.env.GRAPHILE_WORKER_ENTRY).href);
const patterns = JSON.parse(process.argv[2]);
const { start, step, count } = JSON.parse(process.argv[3]);
const moments = Array.from({ length: count }, (_, n) => new Date(Date.parse(start) + n * step * 60000));
const result = patterns.map((pattern) => {
  const [item] = parseCrontab(`${pattern} task`);
  return moments.map((d) => item.match({
    min: d.getUTCMinutes(), hour: d.getUTCHours(), date: d.getUTCDate(), month: d.getUTCMonth() + 1,
    dow: d.getUTCDay(),
  }));
});
process.stdout.write(JSON.stringify(result) + "\\n");
"""

# The corners where cron dialects disagree: day-of-month with day-of-week, full ranges, 7 for Sunday, steps.
PATTERNS = [
    "0 0 15 * 1",
    "0 0 2 * 0-6",
    "0 0 1-31 * 1",
    "0 0 */2 * 5",
    "*/7 */5 * * 7",
    "30 12 1,15 2-11 1-5",
    "0 */3 13 * 5",
    "15-45 4 * 1 *",
]


async def test_patterns_match_the_same_minutes_as_graphile(node: NodeRunner, tmp_path: Path) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    # Every 7 minutes over a year: each weekday, day of month, month and many hour/minute pairs come up.
    count = 366 * 24 * 60 // 7
    moments = [start + timedelta(minutes=7 * n) for n in range(count)]
    script = tmp_path / "match.mjs"
    script.write_text(MATCH_SCRIPT)
    sample = {"start": start.isoformat(), "step": 7, "count": count}
    output = await node.run_argv(node.toolchain.command(script, json.dumps(PATTERNS), json.dumps(sample)))
    graphile = json.loads(output.strip().splitlines()[-1])
    for pattern, expected in zip(PATTERNS, graphile, strict=True):
        [item] = parse_crontab(f"{pattern} task")
        ours = [item.matches(moment) for moment in moments]
        disagreements = [m.isoformat() for m, a, b in zip(moments, ours, expected, strict=True) if a != b]
        assert not disagreements, f"{pattern!r} differs from Graphile at {disagreements[:5]}"
        assert any(expected), f"{pattern!r} never fires in the sample; the comparison would prove nothing"
