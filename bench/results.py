"""Collected figures: per system, per measurement, one value per repetition (or an error)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

ENQUEUE = "enqueue_jobs_per_s"
DRAIN = "drain_jobs_per_s"
LATENCY_P50 = "latency_p50_ms"
LATENCY_P99 = "latency_p99_ms"
MEASUREMENTS = (ENQUEUE, DRAIN, LATENCY_P50, LATENCY_P99)


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

    def add(self, measurement: str, value: float) -> None:
        self.values.setdefault(measurement, []).append(value)

    def fail(self, measurement: str, message: str) -> None:
        self.errors.setdefault(measurement, message)  # the first failure explains the rest

    def median(self, measurement: str) -> float | None:
        values = self.values.get(measurement)
        return statistics.median(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "median": {m: self.median(m) for m in MEASUREMENTS},
            "runs": self.values,
            "errors": self.errors,
            "notes": self.notes,
            "drains_cut_short": self.drains_cut_short,
            "latency_samples_ms": self.latency_samples_ms,
        }
