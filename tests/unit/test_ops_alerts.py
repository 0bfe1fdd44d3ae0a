"""ops/prometheus/alerts.yml: only metrics and labels the code exports, each rule with its `for`, severity and
annotations leading to the runbook, each with a promtool unit test, and promtool's checks passing; the metrics
how-to points at the file rather than a copy."""

from __future__ import annotations

import re

from tests.support.markdown import markdown_anchors, markdown_section
from tests.support.ops import (
    ALERTS,
    ALERTS_TEST,
    METRICS_DOC,
    PROMETHEUS_CONFIG,
    REPO_ROOT,
    alert_rules,
    analyse,
    load_yaml_file,
    run_promtool,
    unknown_names,
)


def test_alert_rules_use_only_metrics_and_labels_the_code_exports() -> None:
    rules = alert_rules()
    assert len(rules) >= 10
    problems = {rule["alert"]: unknown_names(analyse(rule["expr"])) for rule in rules}
    assert {alert: found for alert, found in problems.items() if found} == {}


def test_every_alert_has_a_for_a_severity_and_annotations_that_lead_to_the_runbook() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names repeat"
    runbook = markdown_section(METRICS_DOC, "## When an alert fires")
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smhdw]", rule.get("for") or ""), f"{name}: no `for`"
        assert rule["labels"]["severity"] in ("page", "warning", "ticket"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert (REPO_ROOT / path).resolve() == METRICS_DOC.resolve(), name
        assert anchor == "when-an-alert-fires" and anchor in markdown_anchors(METRICS_DOC), name
        assert f"`{name}`" in runbook, f"{name} is not in the runbook table of {METRICS_DOC.name}"
        # The summary names what the alert is grouped by: which lane, task or process.
        kept = {use.label for use in analyse(rule["expr"]).labels if use.clause == "by"}
        for label in kept & {"lane", "task", "instance"}:
            assert f"$labels.{label}" in annotations["summary"], f"{name}: the summary does not name the {label}"


def test_every_alert_has_a_promtool_unit_test() -> None:
    document = load_yaml_file(ALERTS_TEST)
    assert document["rule_files"] == [ALERTS.name]
    tested = {case["alertname"] for test in document["tests"] for case in test["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_promtool_check_rules_passes() -> None:
    output = run_promtool("check", "rules", str(ALERTS.relative_to(REPO_ROOT)))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)


def test_promtool_check_config_passes_on_the_compose_prometheus_config() -> None:
    assert "SUCCESS" in run_promtool("check", "config", str(PROMETHEUS_CONFIG.relative_to(REPO_ROOT)))


def test_the_metrics_doc_points_at_the_files_instead_of_a_copy() -> None:
    text = METRICS_DOC.read_text(encoding="utf-8")
    assert "](../../ops/prometheus/alerts.yml)" in text
    assert "](../../ops/grafana/backfill.json)" in text
    assert "- alert:" not in text, "the alert rules are in ops/prometheus/alerts.yml: link to them, do not copy them"
