"""What the dashboard costs the database over a large queue: its statements' plans and its pages' render times.

    .venv/bin/python -m bench.tools.dashboard_cost --database-url URL [--jobs 1000000] [--rounds 20] [--keep]

Builds a fresh schema ``bench_dashboard`` (``migrate_all``) and fills it with SQL (one ``insert ... select`` from
``generate_series`` into ``_private_jobs``), then ``VACUUM ANALYZE``:

* ``--jobs`` jobs over 20 tasks (and a rare one, 1 job in 10,000; a task ``bench.idle`` has none), 10% of them in
  50 named queues, over backfill's six priorities (1% -20, 4% -10, 10% -5, 60% 0, 15% 5, 10% 10); 60% due in the
  past 3 hours (ready), 40% due 10 minutes to a day ahead (scheduled); 5% in the custom lane ``reports`` (its two
  flags); 1 in 2,000 retrying (attempts 1-3, last_error), 1 in 20,000 failed (attempts = max_attempts), 1 in
  20,000 locked by a live worker;
* ``--dead-letters`` dead-letter entries (one in ten requeued), six registered workers (one dead), 60 minutes of
  ``backfill_throughput`` for the lanes fast, bulk and reports, a few rescued jobs, one queue pause.

Then:

1. ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` of every statement one live refresh of the overview runs
   (``backfill.admin.live.LiveFigures``, with its default cap ``COUNT_CAP``), of its two spaced full counts, of
   the first pages of the jobs list (no filter, and filtered by task, state and lane) and the dead-letter list
   (and the dead-letter page's stats), and what-if rows (the live samples without JIT, and with a tenth of the
   cap). A bounded statement runs 5 times and the run with the median execution time is shown; a full count
   runs twice. Beside it: ``prepared ms``, the statement as asyncpg runs it (one prepared statement executed 10
   times on one connection; the median of executions 6-10, once PostgreSQL's plan cache has chosen between
   custom and generic plans, ``G`` when it chose the generic one), and ``forced generic ms``, EXPLAIN ANALYZE
   of the generic plan (``plan_cache_mode = force_generic_plan``; ``*`` when it reads other indexes or tables,
   ``J`` when it was compiled with JIT).
2. The pages over HTTP, in process (``httpx.ASGITransport`` over ``AdminApi(url, schema=...)``, which opens its
   own pool): the first ``GET /`` (template compilation and the spaced full counts included), ``--rounds``
   requests each of ``GET /``, ``GET /api/overview`` and ``GET /jobs`` with a fresh snapshot
   (``LiveFigures.forget()`` before each; ``recounts``: how many of them ran the spaced full counts again), the
   same served from the shared snapshot (taken, untimed, just before), two filtered ``/jobs`` pages and ``GET
   /dlq``. Median, p95 and max in milliseconds.

Drops the schema at the end unless ``--keep``. Prints plain-text tables and a note on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from backfill.admin import AdminApi
from backfill.admin.live import COUNT_CAP
from backfill.admin.queries import AdminSql
from backfill.control.queries import ControlSql
from backfill.core import SchemaName
from backfill.core.admin.queries import InspectSql
from backfill.core.extension import Executor
from backfill.dlq.models import DeadLetterFilter
from backfill.dlq.queries import EntrySql, filter_arguments
from backfill.lanes.figures import STATES, LaneFiguresSql, lane_stats
from backfill.lanes.lane import lane_flags
from backfill.migrations import migrate_all
from bench.machine import cpu_model

SCHEMA = "bench_dashboard"
CUSTOM_LANE = "reports"
TASKS = 20
QUEUES = 50
PAGE = 50  # the listings' default page size (backfill.admin.params.DEFAULT_PAGE); they fetch one row more
BOUNDED_RUNS = 5
FULL_RUNS = 2
GENERIC_RUNS = 3
PREPARED_EXECUTIONS = 10
SLOW_MS = 1000.0  # a statement slower than this runs only FULL_RUNS times
WORKERS = (  # worker_id, lane, concurrency, alive
    ("bench-a-fast", "fast", 24, True),
    ("bench-a-bulk", "bulk", 24, True),
    ("bench-b-fast", "fast", 24, True),
    ("bench-b-bulk", "bulk", 24, True),
    ("bench-b-reports", CUSTOM_LANE, 3, True),
    ("bench-c-bulk", "bulk", 24, False),
)
TABLES = (
    "_private_jobs",
    "_private_tasks",
    "_private_job_queues",
    "backfill_dlq",
    "backfill_workers",
    "backfill_throughput",
    "backfill_job_recoveries",
    "backfill_pauses",
)


def _seed_statements(schema: str) -> list[str]:
    """The seeding statements; $1 the number of jobs and $2 the custom lane's flags (jsonb) for the jobs one."""
    alive = [w for w in WORKERS if w[3]]
    holders = "array[" + ", ".join(f"'{w[0]}'" for w in alive) + "]"
    workers = ", ".join(
        f"('{worker_id}', '{worker_id.split('-')[1]}-host', {1000 + n}, now() - interval '2 hours', "
        + ("now()" if up else "now() - interval '20 minutes'")
        + f", interval '30 seconds', {concurrency}, '{{}}', 'bench', "
        + ("null" if up else "now() - interval '19 minutes'")
        + f", '{lane}')"
        for n, (worker_id, lane, concurrency, up) in enumerate(WORKERS)
    )
    return [
        f"""insert into {schema}._private_tasks (identifier)
            select 'bench.task_' || lpad(i::text, 2, '0') from generate_series(0, {TASKS - 1}) as i
            union all values ('bench.rare'), ('bench.idle')""",
        f"""insert into {schema}._private_job_queues (queue_name)
            select 'bench.queue_' || lpad(i::text, 2, '0') from generate_series(0, {QUEUES - 1}) as i""",
        f"""with tasks as (
              select array_agg(id order by identifier) as ids from {schema}._private_tasks
               where identifier like 'bench.task_%'
            ), rare as (
              select id from {schema}._private_tasks where identifier = 'bench.rare'
            ), queues as (
              select array_agg(id order by queue_name) as ids from {schema}._private_job_queues
            ), g as (
              select i, random() as r_task, random() as r_queue, random() as r_priority, random() as r_due,
                     random() as r_when, random() as r_lane
                from generate_series(1, $1::int) as i
            ), shaped as (
              select g.*,
                     case when g.r_due < 0.6 then now() - g.r_when * interval '3 hours'
                          else now() + interval '10 minutes' + g.r_when * interval '1 day' end as due,
                     g.i % 2000 = 1 as retrying, g.i % 20000 = 7 as failed, g.i % 20000 = 13 as locked
                from g
            )
            insert into {schema}._private_jobs
              (task_id, job_queue_id, payload, priority, run_at, attempts, max_attempts, last_error, created_at,
               updated_at, locked_at, locked_by, flags)
            select case when s.i % 10000 = 0 then rare.id else tasks.ids[1 + floor(s.r_task * {TASKS})::int] end,
                   case when s.r_queue < 0.1 then queues.ids[1 + floor(s.r_queue * 10 * {QUEUES})::int] end,
                   json_build_object('n', s.i, 'account', 'acct-' || (s.i % 100000), 'kind', 'bench'),
                   case when s.r_priority < 0.01 then -20 when s.r_priority < 0.05 then -10
                        when s.r_priority < 0.15 then -5 when s.r_priority < 0.75 then 0
                        when s.r_priority < 0.90 then 5 else 10 end,
                   s.due,
                   case when s.failed then 25 when s.retrying then 1 + s.i % 3 when s.locked then 1 else 0 end,
                   25,
                   case when s.failed or s.retrying
                        then 'RuntimeError: bench failure ' || (s.i % 37) || E'\\nTraceback (most recent call last):'
                   end,
                   least(s.due, now()) - interval '1 minute',
                   least(s.due, now()),
                   case when s.locked then now() end,
                   case when s.locked then ({holders})[1 + s.i % {len(alive)}] end,
                   case when s.r_lane < 0.05 then $2::jsonb end
              from shaped as s, tasks, rare, queues""",
        f"""insert into {schema}.backfill_workers
              (worker_id, hostname, pid, started_at, last_heartbeat_at, dead_after, concurrency, tasks, version,
               declared_dead_at, lane)
            values {workers}""",
        f"""insert into {schema}.backfill_job_recoveries (job_id, recoveries, last_recovered_at, last_worker_id)
            select id, 1, now() - interval '19 minutes', 'bench-c-bulk'
              from {schema}._private_jobs where locked_at is not null order by id limit 10""",
        f"""insert into {schema}.backfill_throughput (minute, lane, succeeded, failed)
            select date_trunc('minute', now()) - m * interval '1 minute', lane,
                   (random() * 5000)::bigint, (random() * 50)::bigint
              from generate_series(0, 59) as m, unnest(array['fast', 'bulk', '{CUSTOM_LANE}']) as lane""",
        f"""insert into {schema}.backfill_pauses (kind, name, paused_by, reason)
            values ('queue', 'bench.queue_{QUEUES - 1:02d}', 'bench', 'dashboard_cost')""",
    ]


def _dead_letters_statement(schema: str) -> str:
    """$1 how many entries."""
    return f"""
        insert into {schema}.backfill_dlq
          (job_id, task_identifier, payload, queue_name, priority, attempts, max_attempts, errors, last_error,
           reason, created_at, run_at, failed_at, requeue_count, requeued_at, requeued_job_id, state,
           exception_type, traceback)
        select 50000000 + i, 'bench.task_' || lpad((i % {TASKS})::text, 2, '0'), json_build_object('n', i),
               case when i % 7 = 0 then 'bench.queue_' || lpad((i % {QUEUES})::text, 2, '0') end,
               0, 25, 25,
               jsonb_build_array(jsonb_build_object('attempt', 25, 'error', e.error, 'failed_at', e.failed_at,
                                                    'permanent', false, 'job_id', 50000000 + i)),
               e.error,
               case when i % 5 = 0 then 'permanent_failure' else 'attempts_exhausted' end,
               e.failed_at - interval '1 day', e.failed_at - interval '1 hour', e.failed_at,
               case when i % 10 = 0 then 1 else 0 end,
               case when i % 10 = 0 then e.failed_at + interval '1 minute' end,
               case when i % 10 = 0 then 60000000 + i end,
               case when i % 10 = 0 then 'requeued' else 'dead' end,
               (array['KeyError', 'ValueError', 'TimeoutError', 'RuntimeError'])[1 + i % 4],
               E'Traceback (most recent call last):\\n  File "tasks.py", line 1, in run\\n  ...'
          from generate_series(1, $1::int) as i
         cross join lateral (
           select now() - i * interval '3 minutes' as failed_at, 'ValueError: bad input ' || (i % 30) as error
         ) as e"""


async def seed(pool: asyncpg.Pool[Any], jobs: int, dead_letters: int) -> float:
    """Install and fill the schema; the seconds it took."""
    started = time.monotonic()
    await pool.execute(f"drop schema if exists {SCHEMA} cascade")
    await migrate_all(pool, SchemaName(SCHEMA))
    flags = json.dumps(dict.fromkeys(lane_flags(CUSTOM_LANE), True))
    async with pool.acquire() as connection:
        await connection.execute("select setseed(0.42)")
        for n, statement in enumerate(_seed_statements(SCHEMA)):
            if n == 2:
                await connection.execute(statement, jobs, flags)
            else:
                await connection.execute(statement)
        await connection.execute(_dead_letters_statement(SCHEMA), dead_letters)
        for table in TABLES:
            await connection.execute(f"vacuum analyze {SCHEMA}.{table}")
    return time.monotonic() - started


# -- EXPLAIN ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    group: str
    name: str
    sql: str
    args: tuple[Any, ...]
    full: bool = False  # reads the whole table by design
    settings: tuple[str, ...] = ()  # SET before it (a what-if row), RESET after


@dataclass(frozen=True, slots=True)
class Explained:
    statement: Statement
    top: str
    reads: str  # indexes and sequential scans, in plan order
    rows: int
    buffers: int
    planning_ms: float
    execution_ms: float
    runs: int
    jit_ms: float | None
    prepared_ms: float | None  # client-side, executions 6-10 of one prepared statement
    prepared_generic: bool  # PostgreSQL ran that prepared statement with its generic plan
    generic_ms: float | None  # EXPLAIN ANALYZE under force_generic_plan
    generic_differs: bool
    generic_jit: bool


def statements(cap: int) -> list[Statement]:
    schema = SchemaName(SCHEMA)
    admin, inspect = AdminSql.for_schema(schema), InspectSql.for_schema(schema)
    entries = EntrySql.for_schema(schema)
    no_filter = filter_arguments(DeadLetterFilter())

    def jobs(
        task: str | None = None, state: str | None = None, required_flags: list[str] | None = None
    ) -> tuple[Any, ...]:
        # list_jobs' 15 parameters (backfill.core.admin.queries.list_jobs), the page's limit + 1.
        return (task, None, state, None, None, None, PAGE + 1, None, None, None, required_flags, None, None, None, None)

    small = max(1, cap // 10)
    return [
        Statement("live", "database_now", admin.database_now, ()),
        Statement("live", "ready_sample", admin.ready_sample, (cap,)),
        Statement("live", "scheduled_sample", admin.scheduled_sample, (cap,)),
        Statement("live", "throughput_minutes", admin.throughput_minutes, ()),
        Statement("live", "worker_registry", admin.worker_registry, ()),
        Statement("live", "dead_letters", admin.dead_letters, (cap,)),
        Statement("live", "list_pauses", ControlSql.for_schema(schema).pauses, ()),
        Statement("spaced", "workers (lock holders)", inspect.workers, (), full=True),
        Statement("spaced", "lane_stats", LaneFiguresSql.for_schema(schema).lane_stats, (), full=True),
        Statement("/jobs", "list_jobs", inspect.list_jobs, jobs()),
        Statement("/jobs", "list_jobs task=bench.task_03", inspect.list_jobs, jobs(task="bench.task_03")),
        Statement("/jobs", "list_jobs task=bench.rare", inspect.list_jobs, jobs(task="bench.rare")),
        Statement("/jobs", "list_jobs task=bench.idle (no jobs)", inspect.list_jobs, jobs(task="bench.idle")),
        Statement("/jobs", "list_jobs state=waiting", inspect.list_jobs, jobs(state="waiting")),
        Statement("/jobs", "list_jobs state=retrying", inspect.list_jobs, jobs(state="retrying")),
        Statement("/jobs", "list_jobs state=failed", inspect.list_jobs, jobs(state="failed")),
        Statement(
            "/jobs",
            f"list_jobs lane={CUSTOM_LANE}",
            inspect.list_jobs,
            jobs(required_flags=[lane_flags(CUSTOM_LANE)[1]]),
        ),
        Statement("/dlq", "dlq list", entries.list, (*no_filter, None, None, PAGE + 1)),
        Statement("/dlq", "dlq stats totals", entries.totals, (), full=True),
        Statement("/dlq", "dlq stats by_task", entries.by_task, (), full=True),
        Statement("/dlq", "dlq stats by_reason", entries.by_reason, (), full=True),
        Statement("/dlq", "dlq stats by_exception_type", entries.by_exception_type, (), full=True),
        Statement("/dlq", "dlq stats top_errors", entries.top_errors, (), full=True),
        # What-if rows for the issue: the live samples with a smaller cap, and without JIT.
        Statement("what-if", "ready_sample jit=off", admin.ready_sample, (cap,), settings=("jit = off",)),
        Statement("what-if", "scheduled_sample jit=off", admin.scheduled_sample, (cap,), settings=("jit = off",)),
        Statement("what-if", f"ready_sample cap={small}", admin.ready_sample, (small,)),
        Statement("what-if", f"scheduled_sample cap={small}", admin.scheduled_sample, (small,)),
    ]


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


_SCAN_SHORT = {"Index Scan": "IS", "Index Only Scan": "IOS", "Bitmap Index Scan": "BIS"}


def _reads(plan: dict[str, Any]) -> str:
    """The indexes the plan reads (IS index scan, IOS index-only, BIS bitmap) and its sequential scans."""
    seen: list[str] = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if "Index Name" in node:
            label = f"{node['Index Name']}({_SCAN_SHORT.get(kind, kind)})"
        elif kind == "Seq Scan":
            label = f"SEQ SCAN {node['Relation Name']}"
        else:
            continue
        if label not in seen:
            seen.append(label)
    return ", ".join(seen) or "-"


def _literal(value: Any) -> str:
    """A parameter as an SQL literal, for EXECUTE."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list):
        return "array[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    raise TypeError(f"no literal for {value!r}")


async def _explain_once(connection: Executor, sql: str, args: Sequence[Any]) -> dict[str, Any]:
    raw = await connection.fetchval(f"explain (analyze, buffers, format json) {sql}", *args)
    result: dict[str, Any] = json.loads(raw)[0]
    return result


async def explain(connection: Executor, statement: Statement) -> Explained:
    for setting in statement.settings:
        await connection.execute(f"set {setting}")
    try:
        return await _explain(connection, statement)
    finally:
        for setting in statement.settings:
            await connection.execute(f"reset {setting.split('=')[0].strip()}")


async def _explain(connection: Executor, statement: Statement) -> Explained:
    wanted = FULL_RUNS if statement.full else BOUNDED_RUNS
    results = [await _explain_once(connection, statement.sql, statement.args)]
    if results[0]["Execution Time"] > SLOW_MS:
        wanted = min(wanted, FULL_RUNS)
    while len(results) < wanted:
        results.append(await _explain_once(connection, statement.sql, statement.args))
    ordered = sorted(results, key=lambda r: float(r["Execution Time"]))
    chosen = ordered[(len(ordered) - 1) // 2]
    plan = chosen["Plan"]
    prepared_ms, prepared_generic = await _prepared(connection, statement)
    generic_ms, generic_reads, generic_jit = await _explain_generic(connection, statement)
    jit = chosen.get("JIT")
    return Explained(
        statement=statement,
        top=plan["Node Type"],
        reads=_reads(plan),
        rows=int(plan["Actual Rows"]),
        buffers=int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0)),
        planning_ms=float(chosen["Planning Time"]),
        execution_ms=statistics.median(float(r["Execution Time"]) for r in results),
        runs=len(results),
        jit_ms=None if jit is None else float(jit["Timing"]["Total"]),
        prepared_ms=prepared_ms,
        prepared_generic=prepared_generic,
        generic_ms=generic_ms,
        generic_differs=generic_ms is not None and generic_reads != _reads(plan),
        generic_jit=generic_jit,
    )


async def _prepared(connection: Executor, statement: Statement) -> tuple[float | None, bool]:
    """The statement as asyncpg runs it (a prepared statement), PREPARED_EXECUTIONS times on this connection:
    the median client-side time of the executions after PostgreSQL's plan cache has chosen between custom and
    generic plans (it decides after five), and whether it chose the generic one."""
    if not statement.args or statement.full:
        return None, False
    prepared = await connection.prepare(statement.sql)
    times: list[float] = []
    for _ in range(PREPARED_EXECUTIONS):
        started = time.perf_counter()
        await prepared.fetch(*statement.args)
        times.append((time.perf_counter() - started) * 1000)
    generic = await connection.fetchval(
        "select generic_plans > 0 from pg_prepared_statements where name = $1", prepared.get_name()
    )
    return statistics.median(times[5:]), bool(generic)


async def _explain_generic(connection: Executor, statement: Statement) -> tuple[float | None, str, bool]:
    """The execution time of the statement's generic plan (median of up to GENERIC_RUNS runs; one when slow),
    what that plan reads, and whether PostgreSQL compiled it with JIT."""
    if not statement.args:
        return None, "", False
    await connection.execute(f"prepare bench_generic as {statement.sql}")
    try:
        await connection.execute("set plan_cache_mode = force_generic_plan")
        execute = f"execute bench_generic({', '.join(_literal(a) for a in statement.args)})"
        results = [await _explain_once(connection, execute, ())]
        while len(results) < GENERIC_RUNS and results[0]["Execution Time"] < 100:
            results.append(await _explain_once(connection, execute, ()))
    finally:
        await connection.execute("reset plan_cache_mode")
        await connection.execute("deallocate bench_generic")
    median = statistics.median(float(r["Execution Time"]) for r in results)
    return median, _reads(results[0]["Plan"]), "JIT" in results[0]


# -- the pages -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timed:
    name: str
    values_ms: list[float]
    size: int  # bytes of the last answer
    recounts: int | None = None  # how many requests ran the spaced full counts again


async def _get(client: httpx.AsyncClient, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = await client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed, len(response.content)


async def time_pages(database_url: str, rounds: int) -> list[Timed]:
    api = AdminApi(database_url, schema=SCHEMA)
    transport = httpx.ASGITransport(app=api, client=("127.0.0.1", 50000))
    timed: list[Timed] = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            first_ms, size = await _get(client, "/")
            timed.append(Timed("GET / first (templates compiled, spaced full counts run)", [first_ms], size))
            live = (await api._context_now()).live

            async def counted_at() -> Any:
                return (await live.overview())["counted_at"]  # the snapshot a request just took: no statement

            async def series(name: str, path: str, before: Callable[[], Awaitable[None]], watch: bool) -> None:
                """``rounds`` requests; ``watch``: count those whose snapshot ran the spaced full counts again."""
                values: list[float] = []
                recounts, size, last = 0, 0, await counted_at() if watch else None
                for _ in range(rounds):
                    await before()
                    elapsed, size = await _get(client, path)
                    values.append(elapsed)
                    if watch:
                        now = await counted_at()
                        recounts += now != last
                        last = now
                timed.append(Timed(name, values, size, recounts if watch else None))

            async def fresh() -> None:
                live.forget()

            async def shared() -> None:
                live.forget()
                await live.overview()  # untimed: the request finds a snapshot well under max_age old

            async def nothing() -> None:
                return None

            await series("GET / fresh snapshot", "/", fresh, True)
            await series("GET /api/overview fresh snapshot", "/api/overview", fresh, True)
            await series("GET / shared snapshot", "/", shared, False)
            await series("GET /api/overview shared snapshot", "/api/overview", shared, False)
            await series("GET /jobs fresh snapshot", "/jobs", fresh, True)
            await series("GET /jobs shared snapshot", "/jobs", shared, False)
            await series("GET /jobs?task=bench.rare shared", "/jobs?task=bench.rare", shared, False)
            await series("GET /jobs?state=retrying shared", "/jobs?state=retrying", shared, False)
            await series("GET /dlq", "/dlq", nothing, False)
    finally:
        await api.close()
    return timed


# -- printing --------------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [
        max(len(headers[i]), *(len(r[i]) for r in rows)) if rows else len(headers[i]) for i in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def machine_note(pool: asyncpg.Pool[Any]) -> list[tuple[str, str]]:
    settings = await pool.fetch(
        "select name, setting, unit from pg_settings where name = any($1::text[]) order by name",
        ["shared_buffers", "work_mem", "jit", "max_parallel_workers_per_gather", "random_page_cost", "autovacuum"],
    )
    shown = []
    for row in settings:
        value = row["setting"]
        if row["unit"] == "8kB":
            value = f"{int(value) * 8 // 1024} MB"
        elif row["unit"]:
            value = f"{value} {row['unit']}"
        shown.append(f"{row['name']}={value}")
    return [
        ("cpus", f"{os.cpu_count()} x {cpu_model()}"),
        ("os", f"{platform.system()} {platform.release()}"),
        ("postgresql", str(await pool.fetchval("show server_version"))),
        ("settings", ", ".join(shown)),
        ("python", platform.python_version()),
        ("asyncpg", asyncpg.__version__),
    ]


async def data_note(pool: asyncpg.Pool[Any]) -> list[tuple[str, str]]:
    sizes = await pool.fetch(
        """select c.relname, pg_relation_size(c.oid) as size, c.relkind
             from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = $1 and (c.relname = '_private_jobs' or c.relkind = 'i' and exists (
                  select 1 from pg_index as i where i.indexrelid = c.oid
                     and i.indrelid = ($1 || '._private_jobs')::regclass))
            order by c.relkind desc, c.relname""",
        SCHEMA,
    )
    async with pool.acquire() as connection:
        by_lane = await lane_stats(connection, SchemaName(SCHEMA))
    per_priority = await pool.fetch(
        f"""select priority, count(*) filter (where run_at <= now()) as ready, count(*) filter (where run_at > now())
                   as scheduled from {SCHEMA}._private_jobs where is_available group by priority order by priority"""
    )
    dlq = await pool.fetchrow(
        f"select count(*) as total, count(*) filter (where state = 'dead') as dead from {SCHEMA}.backfill_dlq"
    )
    assert dlq is not None
    return [
        ("relations", ", ".join(f"{r['relname']} {r['size'] / 2**20:.0f} MiB" for r in sizes)),
        *(
            (f"lane {s.lane}", ", ".join(f"{state} {getattr(s, state)}" for state in STATES) + f" (total {s.total})")
            for s in by_lane
        ),
        ("available by priority", ", ".join(f"{r['priority']}: {r['ready']}+{r['scheduled']}" for r in per_priority)),
        ("dead letters", f"{dlq['total']} ({dlq['dead']} dead)"),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--dead-letters", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the schema bench_dashboard in place")
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("give --database-url or DATABASE_URL")
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    try:
        print(f"seeding {args.jobs} jobs and {args.dead_letters} dead letters into {SCHEMA} ...", file=sys.stderr)
        seconds = await seed(pool, args.jobs, args.dead_letters)
        print(f"seeded in {seconds:.1f} s (VACUUM ANALYZE included)", file=sys.stderr)
        print("machine")
        print(table(["", ""], [list(r) for r in await machine_note(pool)]))
        print()
        print(f"data: {args.jobs} jobs, seeded in {seconds:.1f} s")
        print(table(["", ""], [list(r) for r in await data_note(pool)]))
        print()
        explained: list[Explained] = []
        async with pool.acquire() as connection:
            for statement in statements(COUNT_CAP):
                print(f"explaining {statement.name} ...", file=sys.stderr)
                explained.append(await explain(connection, statement))
        print(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON), cap {COUNT_CAP}")
        print(
            f"exec ms: median of {BOUNDED_RUNS} runs ({FULL_RUNS} for full counts and statements over "
            f"{SLOW_MS:.0f} ms); top node, rows, buffers (shared hit + read) and plan ms of the median run"
        )
        print(
            f"prepared ms: client-side median of executions 6-{PREPARED_EXECUTIONS} of one asyncpg prepared statement "
            "(G: PostgreSQL chose its generic plan)"
        )
        print(
            "forced generic ms: EXPLAIN ANALYZE under plan_cache_mode = force_generic_plan (*: it reads otherwise; "
            "J: PostgreSQL compiled it with JIT)"
        )
        print("reads: IS index scan, IOS index-only scan, BIS bitmap index scan, SEQ SCAN; [JIT: its total time]")
        rows = [
            [
                e.statement.group,
                e.statement.name,
                e.top,
                str(e.rows),
                str(e.buffers),
                _ms(e.planning_ms),
                _ms(e.execution_ms),
                str(e.runs),
                _ms(e.prepared_ms) + (" G" if e.prepared_generic else ""),
                _ms(e.generic_ms) + ("*" if e.generic_differs else "") + (" J" if e.generic_jit else ""),
                e.reads + ("" if e.jit_ms is None else f" [JIT {e.jit_ms:.0f} ms]"),
            ]
            for e in explained
        ]
        headers = ["page", "statement", "top node", "rows", "buffers", "plan ms", "exec ms", "runs", "prepared ms"]
        print(table([*headers, "forced generic ms", "reads"], rows, right={3, 4, 5, 6, 7, 8, 9}))
        live = [e for e in explained if e.statement.group == "live"]
        print(
            f"one live refresh: {sum(e.execution_ms for e in live):.1f} ms execution, "
            f"{sum(e.planning_ms for e in live):.1f} ms planning, {sum(e.buffers for e in live)} buffers "
            f"(+ the spaced counts {sum(e.execution_ms for e in explained if e.statement.group == 'spaced'):.0f} ms, "
            "at most 1% of the time)"
        )
        print()
        print(f"pages over HTTP in process (httpx.ASGITransport, AdminApi over its own pool), {args.rounds} rounds")
        timed = await time_pages(args.database_url, args.rounds)
        print(
            table(
                ["request", "n", "median ms", "p95 ms", "max ms", "bytes", "recounts"],
                [
                    [
                        t.name,
                        str(len(t.values_ms)),
                        _ms(statistics.median(t.values_ms)),
                        _ms(_p95(t.values_ms)),
                        _ms(max(t.values_ms)),
                        str(t.size),
                        "-" if t.recounts is None else str(t.recounts),
                    ]
                    for t in timed
                ],
                right={1, 2, 3, 4, 5, 6},
            )
        )
    finally:
        if not args.keep:
            await pool.execute(f"drop schema if exists {SCHEMA} cascade")
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
