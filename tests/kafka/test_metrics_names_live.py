"""The dashboard and the alert rules read series a real worker exports: a `streamjobs worker`
process runs jobs (successes, a retried failure, a dead-lettered one) and its /metrics must
contain every metric, label and label value their PromQL selects."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import SpawnCli, wait_for
from tests.unit.test_deploy_dashboards import grouping_labels, selectors, used_expressions

from .worker_support import APP, Env, env_fixture  # noqa: F401

# Labels Prometheus adds to every scraped series.
_TARGET_LABELS = {"job", "instance"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, dict[str, set[str]]]:
    """series name -> label name -> values seen."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    series: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = series[sample.name]
            for name, value in sample.labels.items():
                labels[name].add(value)
    return series


def _value(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_dashboard_and_alert_metrics_exist_on_a_live_worker(
        env: Env, spawn_cli: SpawnCli) -> None:
    """Rule: after a worker ran successful, retried and dead-lettered jobs, its /metrics has
    every series name the dashboard and alerts use, every label they match or group by, and
    every fixed label value they match (outcome, reason)."""
    env.create_topics("task")
    for i in range(4):
        env.emit(key=f"k{i}")
    env.emit(key="flaky", fail="error", fail_attempts=1)  # fails once, retried, succeeds
    env.emit(key="doomed", fail="permanent", fail_attempts=9)  # dead-lettered
    env.flush()
    port = _free_port()
    proc = spawn_cli("worker", APP, "--job-types", "task",
                     env=env.cli_env(STREAMJOBS_METRICS_PORT=str(port)))

    def settled() -> bool:
        try:
            return (_value(port, "streamjobs_jobs_total", outcome="succeeded") >= 5
                    and _value(port, "streamjobs_jobs_total", outcome="retried") >= 1
                    and _value(port, "streamjobs_dead_lettered_total") >= 1
                    and "streamjobs_consumer_lag" in _scrape(port))
        except OSError:
            return False

    wait_for(settled, 45, interval=0.5, what="jobs to succeed, retry and dead-letter")
    series = _scrape(port)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()

    missing: list[str] = []
    for where, expr in used_expressions().items():
        used_labels: set[str] = set()
        for name, matchers in selectors(expr):
            if not name.startswith("streamjobs_"):
                continue
            if name not in series:
                missing.append(f"{where}: series {name}")
                continue
            labels = series[name]
            used_labels |= set(labels)
            for label, (op, value) in matchers.items():
                if label in _TARGET_LABELS or "$" in value:
                    continue
                if label not in labels:
                    missing.append(f"{where}: {name} has no label {label}")
                elif op == "Equal" and value not in labels[label]:
                    missing.append(f"{where}: {name}{{{label}={value!r}}} never exported")
                elif op == "Re" and value.replace("|", "").isidentifier():
                    missing += [f"{where}: {name}{{{label}={alt!r}}} never exported"
                                for alt in value.split("|") if alt not in labels[label]]
        if used_labels:
            extra = grouping_labels(expr) - used_labels - _TARGET_LABELS
            missing += [f"{where}: groups by {label!r}, which no series has" for label in extra]
    assert not missing, "\n".join(missing)
