"""Issue #11's targets, each a ratio of two medians of the same run, and whether a run meets them.

The targets are stated as ratios between systems measured side by side, because absolute figures move with
the machine's load far more than the ratios do (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bench.results import (
    CPU_PER_1000,
    DRAIN,
    ENQUEUE,
    FAST_IDLE_P99,
    FAST_LOADED_P99,
    LATENCY_P50,
    LATENCY_P99,
    SINGLE_ENQUEUE,
    SystemResults,
)

CORE, RUNNER, NODE = "backfill", "backfill-runner", "node"


@dataclass(frozen=True)
class Figure:
    system: str
    measurement: str


@dataclass(frozen=True)
class Target:
    label: str
    numerator: Figure
    denominator: Figure
    bound: float
    at_least: bool  # True: the ratio must be >= bound; False: it must be <= bound (strictly < if strict)
    strict: bool = False

    def describe_bound(self) -> str:
        sign = ">=" if self.at_least else ("<" if self.strict else "<=")
        return f"{sign} {self.bound:.2f}x"

    def met_by(self, ratio: float) -> bool:
        if self.at_least:
            return ratio >= self.bound
        return ratio < self.bound if self.strict else ratio <= self.bound


TARGETS = (
    Target("core drain / Node drain", Figure(CORE, DRAIN), Figure(NODE, DRAIN), 1.4, at_least=True),
    Target("runner drain / core drain", Figure(RUNNER, DRAIN), Figure(CORE, DRAIN), 0.9, at_least=True),
    Target("core add_jobs / Node addJobs", Figure(CORE, ENQUEUE), Figure(NODE, ENQUEUE), 1.0, at_least=True),
    Target("enqueue_many / core add_jobs", Figure(RUNNER, ENQUEUE), Figure(CORE, ENQUEUE), 0.9, at_least=True),
    Target(
        "single BackfillClient.enqueue / Node addJob",
        Figure(RUNNER, SINGLE_ENQUEUE),
        Figure(NODE, SINGLE_ENQUEUE),
        1.2,
        at_least=True,
    ),
    Target(
        "worker CPU per 1,000 jobs: runner / Node",
        Figure(RUNNER, CPU_PER_1000),
        Figure(NODE, CPU_PER_1000),
        1.0,
        at_least=False,
    ),
    # "Keep below Node's": the latency row, for the core and for the layer alike.
    Target("core latency p50 / Node", Figure(CORE, LATENCY_P50), Figure(NODE, LATENCY_P50), 1.0, False, strict=True),
    Target("core latency p99 / Node", Figure(CORE, LATENCY_P99), Figure(NODE, LATENCY_P99), 1.0, False, strict=True),
    Target(
        "runner latency p50 / Node", Figure(RUNNER, LATENCY_P50), Figure(NODE, LATENCY_P50), 1.0, False, strict=True
    ),
    Target(
        "runner latency p99 / Node", Figure(RUNNER, LATENCY_P99), Figure(NODE, LATENCY_P99), 1.0, False, strict=True
    ),
    # Item 5: a Fast job's pickup while Bulk drains, against the same pickup with Bulk idle.
    Target(
        "Fast p99 under Bulk / Fast p99 idle",
        Figure(RUNNER, FAST_LOADED_P99),
        Figure(RUNNER, FAST_IDLE_P99),
        3.0,
        at_least=False,
    ),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    ratio: float | None  # None: a figure is missing (system not run, or its measurement failed)

    @property
    def outcome(self) -> str:
        if self.ratio is None:
            return "-"
        return "pass" if self.target.met_by(self.ratio) else "FAIL"


def _median(results: Mapping[str, SystemResults], figure: Figure) -> float | None:
    system = results.get(figure.system)
    return None if system is None else system.median(figure.measurement)


def evaluate(results: Mapping[str, SystemResults], targets: tuple[Target, ...] = TARGETS) -> list[Verdict]:
    verdicts = []
    for target in targets:
        top, bottom = _median(results, target.numerator), _median(results, target.denominator)
        ratio = None if top is None or bottom is None or bottom == 0 else top / bottom
        verdicts.append(Verdict(target, ratio))
    return verdicts
