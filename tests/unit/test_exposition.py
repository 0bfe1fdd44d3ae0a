"""Merging worker processes' /metrics pages: what each kind of series becomes, on the text prometheus-client
really writes (the runner's own registry) and on the corners of the format."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from backfill.metrics import BackfillMetrics
from backfill.metrics.exposition import format_value, merge_pages, parse_sample


def _page(succeeded: int, duration: float, busy: int, ready: int, build: str = "0.1.0") -> str:
    registry = CollectorRegistry()
    metrics = BackfillMetrics(registry, tasks=["a"], lanes=["fast", "bulk"])
    metrics.jobs_succeeded.labels("a", "fast", "fast_default").inc(succeeded)
    metrics.job_duration.labels("a", "fast").observe(duration)
    text = generate_latest(registry).decode()
    # What a process's collectors report at scrape time, written as they are (gauges of slots and the queue).
    return text + (
        "# HELP backfill_busy_slots Job handlers running now, by lane\n# TYPE backfill_busy_slots gauge\n"
        f'backfill_busy_slots{{lane="fast"}} {busy}.0\n'
        "# HELP backfill_lane_ready_jobs Jobs runnable now\n# TYPE backfill_lane_ready_jobs gauge\n"
        f'backfill_lane_ready_jobs{{lane="fast"}} {ready}.0\n'
        "# HELP python_info Python platform information\n# TYPE python_info gauge\n"
        f'python_info{{version="{build}"}} 1.0\n'
    )


def _samples(text: str) -> dict[tuple[str, str], float]:
    return {
        (name, labels): value
        for name, labels, value in (parse_sample(line) for line in text.splitlines() if line and line[0] != "#")
    }


def test_counters_histograms_and_per_process_gauges_are_summed() -> None:
    merged = _samples(merge_pages([_page(3, 0.2, busy=2, ready=7), _page(4, 2.0, busy=5, ready=7)]))
    job = 'lane="fast",priority_band="fast_default",task="a"'
    assert merged[("backfill_jobs_succeeded_total", job)] == 7
    assert merged[("backfill_job_duration_seconds_count", 'lane="fast",task="a"')] == 2
    assert merged[("backfill_job_duration_seconds_sum", 'lane="fast",task="a"')] == pytest.approx(2.2)
    # 0.2 falls in the 0.25 bucket, 2.0 only from the 2.5 bucket on: buckets add up bound by bound.
    assert merged[("backfill_job_duration_seconds_bucket", 'lane="fast",le="0.25",task="a"')] == 1
    assert merged[("backfill_job_duration_seconds_bucket", 'lane="fast",le="2.5",task="a"')] == 2
    assert merged[("backfill_job_duration_seconds_bucket", 'lane="fast",le="+Inf",task="a"')] == 2
    assert merged[("backfill_busy_slots", 'lane="fast"')] == 7


def test_database_wide_gauges_created_times_and_info_are_not_summed() -> None:
    first, second = _page(1, 0.1, busy=0, ready=7), _page(1, 0.1, busy=0, ready=9)
    merged_text = merge_pages([first, second])
    merged = _samples(merged_text)
    # Every process counts the same waiting jobs: the fleet waits on 9 of them (the fresher figure), not 16.
    assert merged[("backfill_lane_ready_jobs", 'lane="fast"')] == 9
    created = 'lane="fast",priority_band="fast_default",task="a"'
    assert merged[("backfill_jobs_succeeded_created", created)] == min(
        _samples(first)[("backfill_jobs_succeeded_created", created)],
        _samples(second)[("backfill_jobs_succeeded_created", created)],
    )
    assert merged[("python_info", 'version="0.1.0"')] == 1
    info = next(key for key in merged if key[0] == "backfill_build_info")
    assert merged[info] == 1
    # Each family once, with its HELP and TYPE.
    assert merged_text.count("# TYPE backfill_jobs_succeeded_total counter\n") == 1
    assert merged_text.count("# HELP backfill_lane_ready_jobs ") == 1


def test_a_series_only_one_process_has_is_kept_and_the_result_parses_again() -> None:
    only_one = '# HELP extra_total X\n# TYPE extra_total counter\nextra_total{lane="bulk"} 5.0\n'
    merged = merge_pages([_page(1, 0.1, 0, 0), only_one, _page(2, 0.1, 0, 0)])
    assert _samples(merged)[("extra_total", 'lane="bulk"')] == 5
    assert _samples(merge_pages([merged])) == _samples(merged)  # merging is stable


def test_label_values_with_braces_commas_quotes_and_escapes() -> None:
    labels = r'queue="a},b",note="say \"hi\" \\ {x}"'
    page = f"# TYPE q gauge\nq{{{labels}}} 2.0 1700000000000\nplain 1.5\nnan_one NaN\ninf_one +Inf\n"
    assert parse_sample(f"q{{{labels}}} 2.0 1700000000000") == ("q", labels, 2.0)
    merged = _samples(merge_pages([page, page]))
    assert merged[("q", labels)] == 4
    assert merged[("plain", "")] == 3
    assert merged[("inf_one", "")] == float("inf")
    assert format_value(float("nan")) == "NaN"
    assert format_value(float("-inf")) == "-Inf"
    assert format_value(3.0) == "3.0"


@pytest.mark.parametrize("line", ["", "no_value", 'open{lane="x" 1', "{} 1"])
def test_a_line_that_is_not_a_sample_is_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"sample|label"):
        parse_sample(line)
