"""The Grafana dashboard and the Prometheus alert rules use valid PromQL over metric names the
worker exports (streamjobs/listeners/_metrics.py, documented in docs/observability.md), and
cover what operators need. tests/kafka/test_metrics_names_live.py repeats the name check
against a real worker's /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry

from streamjobs.listeners._metrics import MetricsListener

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "streamjobs.json"
ALERTS = ROOT / "deploy" / "alerts.yml"

# Grafana's interval variables are not PromQL; substitute plausible values before parsing.
_GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}
_NAME = re.compile(r"(?<![\w:\"'])streamjobs_[A-Za-z0-9_:]*")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                              "_created")}


# -- extraction ---------------------------------------------------------------------------------

def metric_names(expr: str) -> set[str]:
    """Names of the streamjobs_ series ``expr`` selects (regex over the text)."""
    return set(_NAME.findall(expr))


def parse(expr: str) -> Any:
    """The PromQL syntax tree (ValueError on a syntax error), Grafana variables replaced."""
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (op, value)}) of every vector selector, from the syntax tree."""
    found: list[tuple[str, dict[str, tuple[str, str]]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value)
                        for m in node.matchers.matchers}
            name = node.name or matchers.pop("__name__", ("", ""))[1]
            found.append((name, matchers))

    promql_parser.walk(parse(expr), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    """Labels named in ``by (...)`` clauses."""
    labels: set[str] = set()

    def visit(node: Any) -> None:
        if (isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None
                and "By" in str(node.modifier.type)):
            labels.update(node.modifier.labels)

    promql_parser.walk(parse(expr), visit)
    return labels


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def used_expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard (panels, variables) and the alert rules, keyed
    by where it is."""
    out: dict[str, str] = {}
    dash = dashboard()
    for panel in _panels(dash["panels"]):
        for target in panel.get("targets", []):
            out[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert m, f"variable {var['name']}: unsupported query {query!r}"
            out[f"variable {var['name']}"] = m.group(1)
    for rule in alert_rules():
        out[f"alert {rule['alert']}"] = rule["expr"]
    return out


def exported_names() -> set[str]:
    """Series names a worker's registry can expose (suffixes by metric type)."""
    names: set[str] = set()
    for family in MetricsListener(CollectorRegistry()).registry.collect():
        suffixes = _SUFFIXES.get(family.type, ("",))
        names.update(family.name + suffix for suffix in suffixes)
    return names


# -- tests --------------------------------------------------------------------------------------

def test_name_extraction() -> None:
    """Rule: the extractor finds metric names in selectors, inside functions and after
    operators, and ignores label values and look-alikes."""
    expr = ('histogram_quantile(0.9, sum by (le) (rate(streamjobs_job_duration_seconds_bucket'
            '[5m]))) / streamjobs_in_flight{job="streamjobs-worker", x="streamjobs_no"}'
            ' or my_streamjobs_thing')
    assert metric_names(expr) == {"streamjobs_job_duration_seconds_bucket", "streamjobs_in_flight"}
    assert {name for name, _ in selectors(expr)} == metric_names(expr) | {"my_streamjobs_thing"}
    with pytest.raises(ValueError):
        parse("sum(rate(streamjobs_jobs_total[5m])")


def test_expressions_parse_and_use_only_exported_metrics() -> None:
    """Rule: every dashboard and alert expression is valid PromQL, the regex and the syntax tree
    agree on the metrics it reads, and each of them is a series the worker's MetricsListener
    exposes (counters as _total, histograms as _bucket/_sum/_count) and that
    docs/observability.md documents."""
    exported = exported_names()
    documented = (ROOT / "docs" / "observability.md").read_text()
    for where, expr in used_expressions().items():
        tree_names = {n for n, _ in selectors(expr) if n.startswith("streamjobs_")}
        assert tree_names == metric_names(expr), where
        for name in metric_names(expr):
            assert name in exported, f"{where}: {name} is not exported by the worker"
            family = re.sub(r"_(total|bucket|sum|count|created)$", "", name)
            assert f"`{family}" in documented, f"{where}: {family} not in observability.md"


def test_dashboard_covers_the_operations_view() -> None:
    """Rule: the dashboard has panels for throughput, failure rate, retries, dead-letter growth,
    processing and end-to-end latency, lag per partition and in-flight jobs, each reading the
    metric that measures it; panel ids are unique and panels do not overlap."""
    dash = dashboard()
    panels = [p for p in _panels(dash["panels"]) if p["type"] != "row"]
    needs = {
        "throughput": ("streamjobs_jobs_total", 'outcome="succeeded"'),
        "failure rate": ("streamjobs_jobs_total", 'outcome="failed"'),
        "retries": ("streamjobs_jobs_total", 'outcome="retried"'),
        "dead-letter growth": ("streamjobs_dead_lettered_total", "increase("),
        "processing time": ("streamjobs_job_duration_seconds_bucket", "histogram_quantile"),
        "end-to-end latency": ("streamjobs_job_end_to_end_seconds_bucket", "histogram_quantile"),
        "lag per partition": ("streamjobs_consumer_lag", "partition"),
        "in flight": ("streamjobs_in_flight", ""),
    }
    for title, (metric, fragment) in needs.items():
        matching = [p for p in panels if title in p["title"].lower()]
        assert matching, f"no panel titled like {title!r}"
        exprs = [t["expr"] for p in matching for t in p["targets"]]
        assert any(metric in metric_names(e) and fragment in e for e in exprs), title
    ids = [p["id"] for p in _panels(dash["panels"])]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in _panels(dash["panels"]):
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
    variables = {v["name"] for v in dash["templating"]["list"]}
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}" and "datasource" in variables
        for t in p["targets"]:
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var.startswith("__") or var in variables, f"{p['title']}: ${var}"


def test_alert_rules_cover_failures_dead_letters_lag_and_down_workers() -> None:
    """Rule: alerts.yml is a well-formed Prometheus rule file with alerts on failure rate, DLQ
    growth, lag growth and a down worker, each reading the right metric."""
    rules = alert_rules()
    by_name = {r["alert"]: r for r in rules}
    assert len(by_name) == len(rules)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
        parse(rule["expr"])
    needs = {
        "StreamjobsHighFailureRate": ("streamjobs_jobs_total", 'outcome="failed"'),
        "StreamjobsDeadLetters": ("streamjobs_dead_lettered_total", "increase("),
        "StreamjobsConsumerLagGrowing": ("streamjobs_consumer_lag", "delta("),
        "StreamjobsWorkerDown": ("streamjobs_worker_up", 'up{job="streamjobs-worker"}'),
    }
    for name, (metric, fragment) in needs.items():
        expr = by_name[name]["expr"]
        assert metric in metric_names(expr) and fragment in expr, name
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert "streamjobs-worker" in {j["job_name"] for j in prom["scrape_configs"]}
