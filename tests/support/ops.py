"""What the tests of the ops files (ops/: alert rules, Grafana dashboard, Dockerfile, compose file) share: their
paths, the metric samples and labels the code exports, a small PromQL reader that finds the metrics and labels an
expression uses, and promtool (Debian's ``prometheus`` package, which .ci/run installs: without it the tests that
need it skip, except under ``CI=true``, where they fail)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from backfill.metrics import BackfillMetrics, QueueSnapshot, WaitingJobs
from backfill.settings import BackfillSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


OPS = REPO_ROOT / "ops"


ALERTS = OPS / "prometheus" / "alerts.yml"


ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"


DASHBOARD = OPS / "grafana" / "backfill.json"


DOCKER = OPS / "docker"


DOCKERFILE = DOCKER / "Dockerfile"


COMPOSE = DOCKER / "compose.yaml"


PROMETHEUS_CONFIG = DOCKER / "prometheus.yml"


METRICS_DOC = REPO_ROOT / "docs" / "how-to" / "metrics-and-alerts.md"


DEPLOYMENT_DOC = REPO_ROOT / "docs" / "how-to" / "deployment.md"


# Labels Prometheus adds to every series it scrapes (the target's), whatever the exporter.
TARGET_LABELS = frozenset({"instance", "job"})


BACKFILL_VARIABLES = frozenset(BackfillSettings.env_names().values())


def exported_samples() -> dict[str, frozenset[str]]:
    """Every sample name a runner's ``BackfillMetrics`` can expose (``_total``, ``_created``, ``_bucket``, ``_sum``,
    ``_count``, ``_info`` forms included), with its label names, from a fresh registry given a value in every
    family, so that each family shows its samples and their labels."""
    registry = CollectorRegistry()
    metrics = BackfillMetrics(registry, tasks=["mail.send"], lanes=["fast", "bulk", "reports"])
    metrics.job_enqueued("mail.send", -5, None)  # creates the (task, lane, band) child of every job counter
    metrics.job_duration.labels("mail.send", "fast").observe(0.1)
    metrics.job_start_lag.labels("mail.send", "fast").observe(0.1)
    metrics.lost_leases.labels("fast", "complete").inc()
    metrics.recovered_jobs.labels("released").inc()
    metrics.pauses_in_force([("lane", "bulk")])
    metrics.busy_slots.add("fast", lambda: 1, 2)
    metrics.queue_gauges.update(
        QueueSnapshot(
            lanes={"fast": WaitingJobs(1, 2, 3.0)},
            queues={"user:1": WaitingJobs(1, 0, 1.0)},
            dead_letters=1,
            dead_letters_by_task={"mail.send": 1},
            collected_at=1.0,
        )
    )
    families = list(registry.collect())
    empty = [family.name for family in families if not family.samples]
    assert not empty, f"give these families a value above, so that their samples and labels show: {empty}"
    samples: dict[str, set[str]] = {}
    for family in families:
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in samples.items()}


EXPORTED = exported_samples()


AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "limitk", "limit_ratio"
})  # fmt: skip


FUNCTIONS = frozenset({
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "end", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time", "minute", "month",
    "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar",
    "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "start",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year"
})  # fmt: skip


GROUPING = frozenset({"by", "without"})


MATCHING = frozenset({"on", "ignoring", "group_left", "group_right"})


WORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})


MATCH_OPERATORS = frozenset({"=", "!=", "=~", "!~"})


_PROMQL_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      |(?P<variable>\$\{[^}]*\}|\$\w+)
      |(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
      |(?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<symbol>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@:])""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class LabelUse:
    """A label an expression relies on: in a matcher (``clause`` "{}", with ``value``) or a ``by``/``without``
    clause, where it must be a label of each of ``metrics``; in ``on``/``ignoring``/``group_*``, of one of them."""

    label: str
    metrics: frozenset[str]
    clause: str
    value: str = ""


@dataclass(frozen=True)
class Query:
    metrics: frozenset[str]
    labels: tuple[LabelUse, ...]


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expr):
        match = _PROMQL_TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[position : position + 30]!r} in {expr!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((str(match.lastgroup), match.group()))
    return tokens


def _closing(tokens: list[tuple[str, str]]) -> dict[int, int]:
    """Index of each opening ``(``, ``[`` or ``{`` -> index of its closing one."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack: list[int] = []
    closing: dict[int, int] = {}
    for index, (kind, text) in enumerate(tokens):
        if kind != "symbol":
            continue
        if text in pairs:
            stack.append(index)
        elif text in pairs.values():
            if not stack or pairs[tokens[stack[-1]][1]] != text:
                raise ValueError(f"unbalanced {text!r}")
            closing[stack.pop()] = index
    if stack:
        raise ValueError(f"unclosed {tokens[stack[-1]][1]!r}")
    return closing


def analyse(expr: str) -> Query:
    """The metric names ``expr`` selects and the labels it relies on. Grafana's variables are ignored (inside
    strings they are matcher values; elsewhere, range durations such as ``[$__rate_interval]``)."""
    tokens = _tokens(expr)
    closing = _closing(tokens)
    selectors: list[tuple[int, str]] = []  # (token index, metric)
    clauses: dict[int, tuple[str, list[str]]] = {}  # token index of by/without/on/... -> (keyword, labels)
    aggregations: list[int] = []
    uses: list[LabelUse] = []

    def text_at(index: int) -> str:
        return tokens[index][1] if index < len(tokens) else ""

    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = text_at(index + 1)
        if text == "[" and kind == "symbol":  # a range or subquery: durations only
            index = closing[index] + 1
        elif text == "{" and kind == "symbol":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        elif kind != "identifier":
            index += 1
        elif text in GROUPING | MATCHING and following == "(":
            labels = [t for k, t in tokens[index + 2 : closing[index + 1]] if k == "identifier"]
            clauses[index] = (text, labels)
            index = closing[index + 1] + 1
        elif text in ("group_left", "group_right"):
            index += 1
        elif text in AGGREGATIONS and following in ("(", *GROUPING):
            aggregations.append(index)
            index += 1
        elif following == "(":
            if text not in FUNCTIONS:
                raise ValueError(f"unknown function {text}() in {expr!r}")
            index += 1
        elif text in WORDS | GROUPING | MATCHING:
            index += 1
        else:
            selectors.append((index, text))
            index += 1
            if following == "{":
                end = closing[index]
                inner = tokens[index + 1 : end]
                for position, (k, label) in enumerate(inner[:-2]):
                    if k == "identifier" and inner[position + 1][1] in MATCH_OPERATORS:
                        uses.append(LabelUse(label, frozenset({text}), "{}", inner[position + 2][1]))
                index = end + 1

    everything = frozenset(metric for _, metric in selectors)
    attached: set[int] = set()
    for start in aggregations:
        argument = start + 1
        clause = clauses.get(argument)
        if clause is not None:
            attached.add(argument)
            argument = closing[argument + 1] + 1
        if text_at(argument) != "(":
            raise ValueError(f"{tokens[start][1]} without an argument in {expr!r}")
        end = closing[argument]
        if clause is None and end + 1 in clauses and clauses[end + 1][0] in GROUPING:
            clause = clauses[end + 1]
            attached.add(end + 1)
        if clause is not None:
            scope = frozenset(metric for position, metric in selectors if argument < position < end)
            uses.extend(LabelUse(label, scope, clause[0]) for label in clause[1])
    for position, (keyword, labels) in clauses.items():
        if keyword in GROUPING and position not in attached:
            raise ValueError(f"{keyword} (...) outside an aggregation in {expr!r}")
        if keyword in MATCHING:
            uses.extend(LabelUse(label, everything, keyword) for label in labels)
    return Query(everything, tuple(uses))


def unknown_names(query: Query) -> list[str]:
    """What ``query`` names that the code does not export: metrics, and labels those metrics lack."""
    problems = [f"metric {metric}" for metric in sorted(query.metrics) if metric not in EXPORTED]
    for use in query.labels:
        have = [EXPORTED.get(metric, frozenset()) | TARGET_LABELS for metric in use.metrics]
        if use.clause in MATCHING:
            missing = not any(use.label in labels for labels in have)
        else:
            missing = not have or any(use.label not in labels for labels in have)
        if missing:
            problems.append(f"label {use.label} ({use.clause}) on {sorted(use.metrics)}")
    return problems


def alert_rules() -> list[dict[str, Any]]:
    document = load_yaml_file(ALERTS)
    return [rule for group in document["groups"] for rule in group["rules"]]


def required_tool(name: str) -> str:
    """The path of ``name``, a program of Debian's ``prometheus`` package (promtool, prometheus); skips without
    it, but fails under CI=true, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian/Ubuntu: apt-get install --no-install-recommends prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it (.ci/run installs it)")
        pytest.skip(reason)
    return path


def run_promtool(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(
        [required_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def load_yaml_file(path: Path) -> Any:
    """A YAML file as Prometheus, Grafana and Docker read it (their YAML is plain: safe_load reads all of it)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))
