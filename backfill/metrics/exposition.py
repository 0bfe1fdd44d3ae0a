"""Merging the ``/metrics`` pages of several worker processes into one, in Prometheus' text format (0.0.4).

A supervisor (:mod:`backfill.runner.supervisor`) serves one endpoint for all its worker processes: it scrapes
each one and merges the pages here. The merge works on the text, not on prometheus-client objects, so it does
not care how a worker builds its metrics (``Counter`` objects or custom collectors), only what it exposes.

Samples with the same name and labels are combined, by what the number means:

* **summed** — counters, histogram buckets/sums/counts and per-process gauges (busy slots, resident memory):
  the fleet's total is what a single process would have reported doing all of the work;
* **the largest** — gauges every process reads from the same database (queue depths, oldest job age, the
  dead-letter count: summing them would count each waiting job once per process), timestamps, and limits;
* **the smallest** — ``*_created`` and ``process_start_time_seconds``: when the oldest series began;
* **one copy** — ``*_info`` series (value 1, the facts in the labels), which each process reports alike.

A family only some processes expose (a lane that ran no job yet in one of them) is kept as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

Combine = Callable[[float, float], float]

# Read from the database by every process's QueueStatsCollector: the same figure N times, not N shares of it.
DATABASE_WIDE_GAUGES: Final = frozenset(
    {
        "backfill_lane_ready_jobs",
        "backfill_lane_scheduled_jobs",
        "backfill_lane_oldest_ready_job_age_seconds",
        "backfill_queue_ready_jobs",
        "backfill_queue_scheduled_jobs",
        "backfill_queue_oldest_ready_job_age_seconds",
        "backfill_dead_letter_jobs",
        "backfill_dead_letter_jobs_by_task",
    }
)
# A per-process limit: the fleet's is not the sum (each process still has only its own).
_LARGEST_OF: Final = frozenset({"process_max_fds"})
_EARLIEST_OF: Final = frozenset({"process_start_time_seconds"})


def _first(kept: float, _other: float) -> float:
    return kept


def _sum(kept: float, other: float) -> float:
    return kept + other


def combine_rule(family: str, sample: str) -> Combine:
    """How two processes' values of ``sample`` (a series of ``family``) become one."""
    if sample.endswith("_created") or sample in _EARLIEST_OF:
        return min
    if family.endswith("_info"):
        return _first
    if family in DATABASE_WIDE_GAUGES or family in _LARGEST_OF or sample.endswith("_timestamp_seconds"):
        return max
    return _sum


@dataclass
class _Family:
    name: str
    help: str | None = None
    type: str | None = None
    # (sample name, raw label text) → value; insertion order is the first page's order.
    samples: dict[tuple[str, str], float] = field(default_factory=dict)


def merge_pages(pages: Iterable[str]) -> str:
    """One page holding every series of ``pages``, combined as the module docstring says."""
    families: dict[str, _Family] = {}
    for page in pages:
        _merge_page(page, families)
    return "".join(_render(family) for family in families.values())


def _merge_page(page: str, families: dict[str, _Family]) -> None:
    current: _Family | None = None
    for line in page.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                current = families.setdefault(name, _Family(name))
                text = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP" and current.help is None:
                    current.help = text
                elif parts[1] == "TYPE" and current.type is None:
                    current.type = text
            continue  # other comments carry nothing to merge
        sample, labels, value = parse_sample(line)
        if current is None or not sample.startswith(current.name):
            # A sample without its family's header (not what prometheus-client writes): a family of its own.
            current = families.setdefault(sample, _Family(sample))
        key = (sample, labels)
        kept = current.samples.get(key)
        current.samples[key] = value if kept is None else combine_rule(current.name, sample)(kept, value)


def parse_sample(line: str) -> tuple[str, str, float]:
    """``name{labels} value [timestamp]`` → (name, the text between the braces as written, value). The label
    text is kept raw: every process renders the same labels the same way, so equal text means equal labels.
    Raises ValueError for a line that is not a sample."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        end = _closing_brace(line, brace)
        labels, rest = line[brace + 1 : end], line[end + 1 :]
    else:
        if space == -1:
            raise ValueError(f"not a sample line: {line[:80]!r}")
        name, labels, rest = line[:space], "", line[space:]
    fields = rest.split()
    if not name or not fields:
        raise ValueError(f"not a sample line: {line[:80]!r}")
    return name, labels, float(fields[0])  # float() reads +Inf, -Inf and NaN as Prometheus writes them


def _closing_brace(line: str, start: int) -> int:
    """The index of the ``}`` closing the label set opened at ``start``: label values may hold ``}``, ``,``
    and escaped quotes (``\\"``), so braces inside quotes do not count."""
    quoted = escaped = False
    for index in range(start + 1, len(line)):
        char = line[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return index
    raise ValueError(f"unclosed label set: {line[:80]!r}")


def format_value(value: float) -> str:
    """A sample value as Prometheus' text format writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _render(family: _Family) -> str:
    lines = []
    if family.help is not None:
        lines.append(f"# HELP {family.name} {family.help}")
    if family.type is not None:
        lines.append(f"# TYPE {family.name} {family.type}")
    for (sample, labels), value in family.samples.items():
        label_text = f"{{{labels}}}" if labels else ""
        lines.append(f"{sample}{label_text} {format_value(value)}")
    return "".join(f"{line}\n" for line in lines)
