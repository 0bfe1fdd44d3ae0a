"""The ops tests' PromQL reader (tests/support/ops.py) and the samples the code exports, tested themselves: a
check of the ops files is only as good as what finds the names in them."""

from __future__ import annotations

import pytest

from tests.support.ops import (
    EXPORTED,
    analyse,
    unknown_names,
)


def test_the_exported_names_include_every_sample_form() -> None:
    assert EXPORTED["backfill_jobs_failed_total"] == {"task", "lane", "priority_band"}
    assert "backfill_jobs_failed_created" in EXPORTED
    assert EXPORTED["backfill_job_duration_seconds_bucket"] == {"task", "lane", "le"}
    assert EXPORTED["backfill_job_start_lag_seconds_count"] == {"task", "lane"}
    assert EXPORTED["backfill_lost_lease_jobs_total"] == {"lane", "action"}
    assert EXPORTED["backfill_dead_letter_jobs"] == frozenset()
    assert "backfill_build_info" in EXPORTED
    assert "backfill_jobs_failed" not in EXPORTED  # a counter's family name is not a sample


def test_analyse_finds_the_metrics_and_the_labels_of_an_expression() -> None:
    query = analyse(
        'histogram_quantile(0.99, sum by (lane, le) (rate(backfill_job_start_lag_seconds_bucket{lane=~"$lane",'
        'task!~"by(x) {y}"}[$__rate_interval])))  # rate(comment_metric[5m])'
    )
    assert query.metrics == {"backfill_job_start_lag_seconds_bucket"}
    assert {(use.label, use.clause, use.value) for use in query.labels} == {
        ("lane", "{}", '"$lane"'),
        ("task", "{}", '"by(x) {y}"'),
        ("lane", "by", ""),
        ("le", "by", ""),
    }
    assert all(use.metrics == query.metrics for use in query.labels)


def test_analyse_scopes_a_grouping_to_its_aggregation() -> None:
    query = analyse(
        "time() - max(backfill_queue_stats_collected_timestamp_seconds) > 120 and on (instance) "
        "sum(rate(backfill_jobs_failed_total[5m:1m] offset 1h)) without (priority_band) > bool 0 or vector(0)"
    )
    assert query.metrics == {"backfill_queue_stats_collected_timestamp_seconds", "backfill_jobs_failed_total"}
    assert {(use.label, use.clause, use.metrics) for use in query.labels} == {
        ("instance", "on", query.metrics),
        ("priority_band", "without", frozenset({"backfill_jobs_failed_total"})),
    }


def test_analyse_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="unknown function"):
        analyse("ratee(backfill_jobs_failed_total[5m])")
    with pytest.raises(ValueError, match="without a metric name"):
        analyse('{__name__="backfill_jobs_failed_total"}')
    with pytest.raises(ValueError, match="unclosed"):
        analyse("sum(rate(backfill_jobs_failed_total[5m])")


def test_unknown_names_are_reported() -> None:
    assert unknown_names(analyse('sum by (lane) (rate(backfill_jobs_failed_total{task="a"}[5m]))')) == []
    assert unknown_names(analyse('sum by (lanes) (backfill_busy_slots{instance="x", queue="q"})')) == [
        "label queue ({}) on ['backfill_busy_slots']",
        "label lanes (by) on ['backfill_busy_slots']",
    ]
    assert unknown_names(analyse("rate(backfill_jobs_failed[5m])")) == ["metric backfill_jobs_failed"]
