"""The pure parts of bench/ behind the new rows: /proc parsing, idle CPU arithmetic, backend naming, the
drivers' recorder, the CPU-per-1,000-jobs figure, and which rows the report shows."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs, urlsplit

from bench import cpu
from bench.database import with_application_name
from bench.drivers.cli import Recorder
from bench.phases import Drain, Settings
from bench.report import render
from bench.results import DRAIN, ENQUEUE, FAST_LOADED_P50, SINGLE_ENQUEUE, SystemResults

# A real /proc/PID/stat line's shape, with a command name holding a space and a parenthesis.
_STAT = "4242 (postgres: x) y) S 1 4242 4242 0 -1 4194560 120 0 0 0 1234 567 0 0 20 0 1 0 100 1000 50"


def test_cpu_ticks_are_read_after_the_command_name_whatever_it_holds() -> None:
    assert cpu.parse_stat_ticks(_STAT) == 1234 + 567


def test_cpu_ticks_of_this_process_are_readable() -> None:

    assert cpu.process_ticks(os.getpid()) is not None
    assert cpu.snapshot([os.getpid(), 2**22 + 12345]).keys() == {os.getpid()}  # a pid that cannot exist is left out


def test_idle_cpu_counts_processes_born_in_the_window_in_full() -> None:
    ticks = cpu.TICKS_PER_SECOND
    before = {1: 10 * ticks, 2: 5 * ticks, 3: 7 * ticks}
    after = {1: 11 * ticks, 2: 5 * ticks, 4: ticks}  # 3 ended, 4 was born
    # (1 s + 0 s + 1 s) over 10 s is 20% of one core.
    assert cpu.percent_of_a_core(before, after, 10.0) == 20.0


def test_the_application_name_is_added_and_other_parameters_kept() -> None:
    dsn = "postgresql://user:secret@db:5432/app?sslmode=disable&application_name=old"
    named = with_application_name(dsn, "bench-idle-node")
    parts = urlsplit(named)
    assert parts.netloc == "user:secret@db:5432" and parts.path == "/app"
    assert parse_qs(parts.query) == {"sslmode": ["disable"], "application_name": ["bench-idle-node"]}
    assert parse_qs(urlsplit(with_application_name("postgresql://db/app", "n")).query) == {"application_name": ["n"]}


def test_the_recorder_stops_on_stamped_jobs_only() -> None:
    stop = asyncio.Event()
    recorder = Recorder(expect=2, stop=stop)
    for n in range(50):  # a Bulk backlog's unstamped jobs
        recorder.record({"n": n})
    recorder.record({"n": 50, "t": 0.0})
    assert not stop.is_set()
    recorder.record({"n": 51, "t": 0.0})
    assert stop.is_set()
    assert recorder.count == 52 and len(recorder.latencies_ms) == 2


def test_cpu_per_1000_jobs_is_over_the_jobs_done() -> None:
    assert Drain(2.0, 20_000, True, cpu_seconds=0.4).cpu_ms_per_1000_jobs == 20.0
    assert Drain(2.0, 0, False, cpu_seconds=0.4).cpu_ms_per_1000_jobs is None
    assert Drain(2.0, 100, True).cpu_ms_per_1000_jobs is None


def _render(results: dict[str, SystemResults]) -> str:
    settings = Settings(
        dsn="postgresql://db/x", jobs=1000, batch=100, latency_jobs=10, gap_ms=5, concurrency=24, drain_limit=90
    )
    facts = dict.fromkeys(("cpus", "os", "postgresql", "python", "node", "backfill"), "?")
    facts |= {"graphile-worker": "?", "procrastinate": "?", "pgqueuer": "?"}
    return render(command="bench", facts=facts, settings=settings, repeat=1, results=results)


def test_the_report_shows_only_rows_that_were_measured_and_a_dash_where_a_system_has_none() -> None:
    runner = SystemResults("backfill-runner", values={ENQUEUE: [10.0], DRAIN: [20.0], SINGLE_ENQUEUE: [3.0]})
    postgres = SystemResults("postgres", values={DRAIN: [50.0]})
    text = _render({"backfill-runner": runner, "postgres": postgres})
    assert "single enqueue (jobs/s)" in text
    assert "backlog drain" not in text and "Fast pickup" not in text
    single = next(line for line in text.splitlines() if line.startswith("single enqueue"))
    assert single.split()[-3:] == ["3", "-", "-"]  # runner, postgres (not measured), ratio (no node)
    assert "targets (issue #11): none measured" in text
    assert "target (issue #11)" not in text  # no table of dashes


def test_a_remark_on_a_measurement_becomes_a_footnote_on_its_cell() -> None:
    runner = SystemResults("backfill-runner", values={FAST_LOADED_P50: [4.0]})
    runner.remark(FAST_LOADED_P50, "the Bulk backlog ran out")
    runner.remark(FAST_LOADED_P50, "the Bulk backlog ran out")  # said once
    text = _render({"backfill-runner": runner})
    row = next(line for line in text.splitlines() if line.startswith("Fast pickup, Bulk busy p50"))
    assert "4.00 [1]" in row
    assert "[1] backfill-runner: the Bulk backlog ran out" in text
    assert "[2]" not in text
