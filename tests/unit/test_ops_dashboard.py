"""ops/grafana/backfill.json: a Grafana dashboard whose every query uses only metrics and labels the code exports,
honours the lane and task selections and parses in promtool, with every family the issue asked for."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.ops import (
    DASHBOARD,
    EXPORTED,
    LabelUse,
    Query,
    analyse,
    run_promtool,
    unknown_names,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


_GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


_LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\s*\)", re.DOTALL)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # those of a collapsed row


def dashboard_queries(board: dict[str, Any]) -> dict[str, Query]:
    """Each target's expression and each query variable's, by where it is, analysed."""
    queries = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} {target['refId']}"] = analyse(target["expr"])
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.fullmatch(text.strip())
            assert match is not None, f"variable {variable['name']}: not label_values(...): {text}"
            selected = analyse(match["selector"])
            label = LabelUse(match["label"], selected.metrics, "by")
            queries[f"variable {variable['name']}"] = Query(selected.metrics, (*selected.labels, label))
    return queries


def test_dashboard_queries_use_only_metrics_and_labels_the_code_exports() -> None:
    queries = dashboard_queries(dashboard())
    assert len(queries) > 40
    assert {where: found for where, query in queries.items() if (found := unknown_names(query))} == {}


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable_and_lane_and_task_filters() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("lane", "task"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_every_dashboard_query_honours_the_lane_and_task_selections() -> None:
    for where, query in dashboard_queries(dashboard()).items():
        for metric in query.metrics:
            for label in ("lane", "task"):
                if where == f"variable {label}" or label not in EXPORTED[metric]:
                    continue
                matchers = {use.value for use in query.labels if use.clause == "{}" and metric in use.metrics}
                assert f'"${label}"' in matchers, f'{where}: {metric} without {label}=~"${label}"'


REQUIRED_FAMILIES = {
    "lanes": ["backfill_busy_slots", "backfill_lane_slots", "backfill_lane_ready_jobs",
              "backfill_lane_oldest_ready_job_age_seconds"],
    "throughput": ["backfill_jobs_succeeded_total", "backfill_jobs_failed_total"],
    "latency": ["backfill_job_start_lag_seconds_bucket", "backfill_job_duration_seconds_bucket"],
    "failures and retries": ["backfill_jobs_retried_total", "backfill_jobs_failed_permanently_total"],
    "dead-letter queue": ["backfill_jobs_dead_lettered_total", "backfill_dead_letter_jobs"],
    "recoveries": ["backfill_lost_lease_jobs_total", "backfill_recovered_jobs_total"],
    "event loop": ["backfill_event_loop_blocked_seconds_total"],
}  # fmt: skip


def test_dashboard_shows_every_family_of_the_issue() -> None:
    used = set().union(*(query.metrics for query in dashboard_queries(dashboard()).values()))
    missing = {area: [name for name in names if name not in used] for area, names in REQUIRED_FAMILIES.items()}
    assert {area: names for area, names in missing.items() if names} == {}
    expressions = [target["expr"] for panel in panels(dashboard()) for target in panel.get("targets", [])]
    for outcome in ("released", "poisoned"):  # crash recoveries and poison pills
        assert any(f'outcome="{outcome}"' in expr for expr in expressions), outcome


def test_promtool_accepts_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, its Grafana variables replaced by values, as a recording rule: promtool parses it."""

    def substitute(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        return "5m" if name.startswith("__") else ".*"

    expressions = [target["expr"] for panel in panels(dashboard()) for target in panel.get("targets", [])]
    rules = [{"record": f"dashboard:query_{n}", "expr": _GRAFANA_VARIABLE.sub(substitute, e)}
             for n, e in enumerate(expressions)]  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")  # JSON is YAML
    assert f"SUCCESS: {len(rules)} rules found" in run_promtool("check", "rules", str(path))
