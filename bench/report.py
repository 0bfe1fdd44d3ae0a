"""The plain-text report and the JSON dump of raw results."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.phases import Settings
from bench.results import (
    BACKLOG_DRAIN,
    BACKLOG_RSS,
    CPU_PER_1000,
    DRAIN,
    ENQUEUE,
    FAST_IDLE_P50,
    FAST_IDLE_P99,
    FAST_LOADED_P50,
    FAST_LOADED_P99,
    IDLE_DB_CPU,
    IDLE_WORKER_CPU,
    LATENCY_P50,
    LATENCY_P99,
    SINGLE_ENQUEUE,
    SystemResults,
)
from bench.targets import Verdict, evaluate

_ROWS = (
    (ENQUEUE, "enqueue (jobs/s)", "{:,.0f}"),
    (SINGLE_ENQUEUE, "single enqueue (jobs/s)", "{:,.0f}"),
    (DRAIN, "drain (jobs/s)", "{:,.0f}"),
    (CPU_PER_1000, "worker CPU per 1,000 jobs (ms)", "{:,.1f}"),
    (LATENCY_P50, "latency p50 (ms)", "{:.2f}"),
    (LATENCY_P99, "latency p99 (ms)", "{:.2f}"),
    (FAST_IDLE_P50, "Fast pickup, Bulk idle p50 (ms)", "{:.2f}"),
    (FAST_IDLE_P99, "Fast pickup, Bulk idle p99 (ms)", "{:.2f}"),
    (FAST_LOADED_P50, "Fast pickup, Bulk busy p50 (ms)", "{:.2f}"),
    (FAST_LOADED_P99, "Fast pickup, Bulk busy p99 (ms)", "{:.2f}"),
    (IDLE_DB_CPU, "idle: PostgreSQL CPU (% of a core)", "{:.2f}"),
    (IDLE_WORKER_CPU, "idle: worker CPU (% of a core)", "{:.2f}"),
    (BACKLOG_DRAIN, "backlog drain (jobs/s)", "{:,.0f}"),
    (BACKLOG_RSS, "backlog drain peak RSS (MiB)", "{:,.0f}"),
)
RATIO_HEADER = "backfill/node"


def describe_method(settings: Settings, repeat: int) -> list[str]:
    return [
        f"enqueue: {settings.jobs:,} jobs through each system's bulk API, in batches of {settings.batch:,} "
        "(timed inside the enqueuing process, after it has connected)",
        f"drain:   the same {settings.jobs:,} no-op jobs, concurrency {settings.concurrency}; from the worker's "
        "start (interpreter start-up excluded, the library's own start-up included) until the harness sees no "
        f"job left (probed every 20 ms); stopped after {settings.drain_limit:.0f} s if still running",
        f"latency: {settings.latency_jobs:,} jobs enqueued one at a time, {settings.gap_ms:g} ms apart, from a "
        "separate process while the worker idles on LISTEN/NOTIFY; handler start time minus the wall-clock "
        "time stamped in the payload just before the enqueue call",
        f"single:  {settings.single_jobs:,} awaited single-job enqueues back to back on one connection (the "
        "runner's through BackfillClient's own pool)",
        "CPU:     the worker process's user+sys CPU time over the drain above (from its start to the stop "
        "signal), per 1,000 jobs",
        *(
            [
                f"Fast:    {settings.fast_jobs:,} Fast-lane jobs one at a time, {settings.gap_ms:g} ms apart, with "
                f"the Bulk lane of the same runner idle, then draining a backlog of {settings.lane_bulk_jobs:,} "
                "no-op jobs; measured as latency"
            ]
            if settings.fast_jobs
            else []
        ),
        *(
            [
                f"idle:    a worker idles {settings.idle_seconds:g} s over {settings.idle_backlog:,} jobs due in an "
                "hour; CPU of its PostgreSQL backends (and of the worker process) from /proc, after 3 s of settling"
            ]
            if settings.idle_backlog
            else []
        ),
        *(
            [
                f"backlog: a backlog of {settings.backlog_jobs:,} no-op jobs drained like the drain above; peak RSS "
                "of the worker process"
            ]
            if settings.backlog_jobs
            else []
        ),
        f"figures: median of {repeat} run(s) of each measurement",
    ]


class _Footnotes:
    """Numbered notes under the table; the same text (an error repeated on every row) gets one number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def _cell(results: SystemResults, measurement: str, fmt: str, footnotes: _Footnotes) -> str:
    value = results.median(measurement)
    error = results.errors.get(measurement) or results.errors.get("setup") or results.errors.get("run")
    if value is None:
        if error is None:
            return "-"
        short = _short(error)
        # Driver errors already start with the system's name.
        label = short if short.startswith(f"{results.name}") else f"{results.name}: {short}"
        return "error " + footnotes.mark(label)
    text = fmt.format(value)
    if measurement == DRAIN and (results.notes or results.drains_cut_short):
        text += " " + footnotes.mark(f"{results.name}: " + "; ".join([*results.notes, *_cut_short(results)]))
    for remark in results.remarks.get(measurement, []):
        text += " " + footnotes.mark(f"{results.name}: {remark}")
    return text


def _cut_short(results: SystemResults) -> list[str]:
    """One sentence for every round whose drain hit the time limit, rather than one per round."""
    counts = results.drains_cut_short
    if not counts:
        return []
    rounds = len(results.values.get(DRAIN, []))
    done = ", ".join(f"{count:,}" for count in counts)
    return [
        f"the drain hit the time limit in {len(counts)} of {rounds} round(s), after {done} jobs; "
        "the rate is over the jobs done"
    ]


def _short(error: str) -> str:
    """The first line of an error and, when it carries the driver's stderr, that stderr's last line."""
    lines = [line for line in error.splitlines() if line.strip()]
    if len(lines) > 1 and lines[-1] != lines[0]:
        return f"{lines[0]} ... {lines[-1].strip()}"
    return lines[0] if lines else "unknown error"


def _ratio(results: Mapping[str, SystemResults], measurement: str) -> str:
    if "backfill" not in results or "node" not in results:
        return "-"
    ours, theirs = results["backfill"].median(measurement), results["node"].median(measurement)
    if ours is None or theirs is None or theirs == 0:
        return "-"
    return f"{ours / theirs:.2f}x"


def _was_measured(results: Mapping[str, SystemResults], measurement: str) -> bool:
    """Whether any system has a figure or an error for ``measurement``: rows of phases left off are not shown."""
    return any(measurement in r.values or measurement in r.errors for r in results.values())


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, the others right-aligned, a rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def render_targets(verdicts: Sequence[Verdict]) -> list[str]:
    """Issue #11's targets: each ratio of this run's medians, its bound, and whether it is met."""
    rows = [
        [
            verdict.target.label,
            "-" if verdict.ratio is None else f"{verdict.ratio:.2f}x",
            verdict.target.describe_bound(),
            verdict.outcome,
        ]
        for verdict in verdicts
    ]
    met = sum(verdict.outcome == "pass" for verdict in verdicts)
    measured = sum(verdict.ratio is not None for verdict in verdicts)
    if not measured:
        return ["targets (issue #11): none measured; they compare backfill, backfill-runner and node"]
    summary = f"targets met: {met} of {measured} measured ({len(verdicts)} in all; '-': a figure is missing)"
    return [*_table(["target (issue #11)", "ratio", "target", "result"], rows), summary]


def render(
    *, command: str, facts: Mapping[str, str], settings: Settings, repeat: int, results: Mapping[str, SystemResults]
) -> str:
    names = list(results)
    footnotes = _Footnotes()
    header = ["measurement", *names, RATIO_HEADER]
    rows = [
        [label, *(_cell(results[name], key, fmt, footnotes) for name in names), _ratio(results, key)]
        for key, label, fmt in _ROWS
        if _was_measured(results, key)
    ]

    software = ", ".join(f"{key} {facts[key]}" for key in ("backfill", "graphile-worker", "procrastinate", "pgqueuer"))
    out = [
        f"command:  {command}",
        f"machine:  {facts['cpus']}; {facts['os']}",
        f"versions: PostgreSQL {facts['postgresql']}; Python {facts['python']}; Node {facts['node']}",
        f"          {software}",
        "",
        *(
            wrapped
            for paragraph in describe_method(settings, repeat)
            for wrapped in textwrap.wrap(paragraph, width=110, subsequent_indent=" " * 9)
        ),
        "",
        *_table(header, rows),
        "",
        f"{RATIO_HEADER}: above 1.00x backfill is faster on the jobs/s rows, and slower (or costlier) on the",
        "others; '-': not measured for that system.",
    ]
    out += [f"[{number}] {text}" for number, text in enumerate(footnotes.texts, start=1)]
    out += ["", *render_targets(evaluate(results))]
    return "\n".join(out)


def write_json(
    path: Path,
    *,
    command: str,
    facts: Mapping[str, str],
    settings: Settings,
    repeat: int,
    results: Mapping[str, SystemResults],
) -> None:
    settings_json: dict[str, Any] = {
        "jobs": settings.jobs,
        "batch": settings.batch,
        "latency_jobs": settings.latency_jobs,
        "gap_ms": settings.gap_ms,
        "concurrency": settings.concurrency,
        "drain_limit_s": settings.drain_limit,
        "single_jobs": settings.single_jobs,
        "fast_jobs": settings.fast_jobs,
        "lane_bulk_jobs": settings.lane_bulk_jobs,
        "idle_backlog": settings.idle_backlog,
        "idle_seconds": settings.idle_seconds,
        "backlog_jobs": settings.backlog_jobs,
        "repeat": repeat,
    }
    targets = [
        {
            "target": verdict.target.label,
            "ratio": verdict.ratio,
            "bound": verdict.target.describe_bound(),
            "result": verdict.outcome,
        }
        for verdict in evaluate(results)
    ]
    document = {
        "command": command,
        "machine": dict(facts),
        "settings": settings_json,
        "systems": {name: result.to_json() for name, result in results.items()},
        "targets": targets,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
