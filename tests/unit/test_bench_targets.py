"""bench/targets.py and the report's targets table: issue #11's ratios, their bounds and the verdicts."""

from __future__ import annotations

from bench.report import render_targets
from bench.results import CPU_PER_1000, DRAIN, FAST_IDLE_P99, FAST_LOADED_P99, SystemResults
from bench.targets import TARGETS, Figure, Target, evaluate


def _results(**figures: dict[str, list[float]]) -> dict[str, SystemResults]:
    out = {}
    for name, values in figures.items():
        system = name.replace("_", "-")
        out[system] = SystemResults(system, values={key: list(runs) for key, runs in values.items()})
    return out


def _verdict(label: str, results: dict[str, SystemResults]) -> tuple[float | None, str]:
    (verdict,) = [v for v in evaluate(results) if v.target.label == label]
    return verdict.ratio, verdict.outcome


def test_a_ratio_is_of_the_medians_of_the_rounds() -> None:
    results = _results(backfill={DRAIN: [100.0, 150.0, 900.0]}, node={DRAIN: [100.0, 10.0, 120.0]})
    ratio, outcome = _verdict("core drain / Node drain", results)
    assert ratio == 1.5  # median 150 / median 100
    assert outcome == "pass"


def test_an_at_least_target_fails_below_its_bound_and_passes_on_it() -> None:
    below = _results(backfill={DRAIN: [139.0]}, node={DRAIN: [100.0]})
    on = _results(backfill={DRAIN: [140.0]}, node={DRAIN: [100.0]})
    assert _verdict("core drain / Node drain", below)[1] == "FAIL"
    assert _verdict("core drain / Node drain", on)[1] == "pass"


def test_an_at_most_target_passes_on_its_bound_and_fails_above_it() -> None:
    label = "worker CPU per 1,000 jobs: runner / Node"
    assert _verdict(label, _results(backfill_runner={CPU_PER_1000: [9.6]}, node={CPU_PER_1000: [9.6]}))[1] == "pass"
    assert _verdict(label, _results(backfill_runner={CPU_PER_1000: [19.6]}, node={CPU_PER_1000: [9.6]}))[1] == "FAIL"


def test_keep_below_node_is_strict() -> None:
    target = Target("x", Figure("a", DRAIN), Figure("b", DRAIN), 1.0, at_least=False, strict=True)
    assert not target.met_by(1.0)
    assert target.met_by(0.99)
    assert target.describe_bound() == "< 1.00x"


def test_the_fast_lane_target_compares_the_runner_with_itself() -> None:
    label = "Fast p99 under Bulk / Fast p99 idle"
    within = _results(backfill_runner={FAST_LOADED_P99: [9.0], FAST_IDLE_P99: [3.0]})
    beyond = _results(backfill_runner={FAST_LOADED_P99: [29.0], FAST_IDLE_P99: [3.3]})
    assert _verdict(label, within) == (3.0, "pass")
    assert _verdict(label, beyond)[1] == "FAIL"


def test_a_missing_figure_gives_no_verdict_rather_than_a_failure() -> None:
    results = _results(backfill={DRAIN: [100.0]})  # Node not in the run
    assert _verdict("core drain / Node drain", results) == (None, "-")
    assert _verdict("runner drain / core drain", results) == (None, "-")
    assert _verdict("core drain / Node drain", _results(backfill={DRAIN: [1.0]}, node={DRAIN: [0.0]})) == (None, "-")


def test_every_target_of_the_issue_table_is_there() -> None:
    labels = [target.label for target in TARGETS]
    assert len(labels) == len(set(labels))
    for expected in (
        "core drain / Node drain",
        "runner drain / core drain",
        "core add_jobs / Node addJobs",
        "enqueue_many / core add_jobs",
        "single BackfillClient.enqueue / Node addJob",
        "worker CPU per 1,000 jobs: runner / Node",
        "Fast p99 under Bulk / Fast p99 idle",
    ):
        assert expected in labels


def test_the_targets_table_prints_ratio_bound_and_result_and_counts_what_was_met() -> None:
    results = _results(backfill={DRAIN: [150.0]}, backfill_runner={DRAIN: [120.0]}, node={DRAIN: [100.0]})
    lines = render_targets(evaluate(results))
    core = next(line for line in lines if line.startswith("core drain / Node drain"))
    runner = next(line for line in lines if line.startswith("runner drain / core drain"))
    assert core.split()[-4:] == ["1.50x", ">=", "1.40x", "pass"]
    assert runner.split()[-4:] == ["0.80x", ">=", "0.90x", "FAIL"]
    assert lines[-1].startswith(f"targets met: 1 of 2 measured ({len(TARGETS)} in all")
