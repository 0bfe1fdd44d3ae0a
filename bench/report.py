"""The plain-text report and the JSON dump of raw results."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.phases import Settings
from bench.results import DRAIN, ENQUEUE, LATENCY_P50, LATENCY_P99, SystemResults

_ROWS = (
    (ENQUEUE, "enqueue (jobs/s)", "{:,.0f}"),
    (DRAIN, "drain (jobs/s)", "{:,.0f}"),
    (LATENCY_P50, "latency p50 (ms)", "{:.2f}"),
    (LATENCY_P99, "latency p99 (ms)", "{:.2f}"),
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


def render(
    *, command: str, facts: Mapping[str, str], settings: Settings, repeat: int, results: Mapping[str, SystemResults]
) -> str:
    names = list(results)
    footnotes = _Footnotes()
    header = ["measurement", *names, RATIO_HEADER]
    rows = [
        [label, *(_cell(results[name], key, fmt, footnotes) for name in names), _ratio(results, key)]
        for key, label, fmt in _ROWS
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]), *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))])

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
        line(header),
        line(["-" * w for w in widths]),
        *(line(row) for row in rows),
        "",
        f"{RATIO_HEADER}: above 1.00x backfill is faster on the jobs/s rows, and slower on the latency rows.",
    ]
    out += [f"[{number}] {text}" for number, text in enumerate(footnotes.texts, start=1)]
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
        "repeat": repeat,
    }
    document = {
        "command": command,
        "machine": dict(facts),
        "settings": settings_json,
        "systems": {name: result.to_json() for name, result in results.items()},
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
