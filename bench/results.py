"""Collected figures: per system, per measurement, one value per repetition (or an error)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

ENQUEUE = "enqueue_jobs_per_s"
SINGLE_ENQUEUE = "single_enqueue_jobs_per_s"
DRAIN = "drain_jobs_per_s"
CPU_PER_1000 = "worker_cpu_ms_per_1000_jobs"
LATENCY_P50 = "latency_p50_ms"
LATENCY_P99 = "latency_p99_ms"
FAST_IDLE_P50 = "fast_lane_idle_p50_ms"
FAST_IDLE_P99 = "fast_lane_idle_p99_ms"
FAST_LOADED_P50 = "fast_lane_under_bulk_p50_ms"
FAST_LOADED_P99 = "fast_lane_under_bulk_p99_ms"
IDLE_DB_CPU = "idle_db_cpu_percent"
IDLE_WORKER_CPU = "idle_worker_cpu_percent"
BACKLOG_DRAIN = "backlog_drain_jobs_per_s"
BACKLOG_RSS = "backlog_drain_peak_rss_mib"
MEASUREMENTS = (
    ENQUEUE,
    SINGLE_ENQUEUE,
    DRAIN,
    CPU_PER_1000,
    LATENCY_P50,
    LATENCY_P99,
    FAST_IDLE_P50,
    FAST_IDLE_P99,
    FAST_LOADED_P50,
    FAST_LOADED_P99,
    IDLE_DB_CPU,
    IDLE_WORKER_CPU,
    BACKLOG_DRAIN,
    BACKLOG_RSS,
)


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default), ``fraction`` in [0, 1]."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class SystemResults:
    name: str
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # measurement (or "setup") -> message
    notes: list[str] = field(default_factory=list)
    # Jobs done in each round whose drain hit the time limit (the rate is then over these jobs).
    drains_cut_short: list[int] = field(default_factory=list)
    latency_samples_ms: list[list[float]] = field(default_factory=list)
    # Fast-lane pickup samples per round, by condition ("idle", "under_bulk").
    fast_lane_samples_ms: dict[str, list[list[float]]] = field(default_factory=dict)
    # Remarks about one measurement (e.g. "Bulk ran dry before the last Fast job"), shown as footnotes.
    remarks: dict[str, list[str]] = field(default_factory=dict)

    def add(self, measurement: str, value: float) -> None:
        self.values.setdefault(measurement, []).append(value)

    def fail(self, measurement: str, message: str) -> None:
        self.errors.setdefault(measurement, message)  # the first failure explains the rest

    def remark(self, measurement: str, text: str) -> None:
        texts = self.remarks.setdefault(measurement, [])
        if text not in texts:
            texts.append(text)

    def median(self, measurement: str) -> float | None:
        values = self.values.get(measurement)
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "median": {m: self.median(m) for m in MEASUREMENTS},
            "runs": self.values,
            "errors": self.errors,
            "notes": self.notes,
            "remarks": self.remarks,
            "drains_cut_short": self.drains_cut_short,
            "latency_samples_ms": self.latency_samples_ms,
            "fast_lane_samples_ms": self.fast_lane_samples_ms,
        }
