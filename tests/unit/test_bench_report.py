"""bench/report.py renders the one-run benchmark report as a markdown table (no timing)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SAMPLE = {
    "started_at": "2026-01-01 00:00:00", "broker": "127.0.0.1:9092", "kafka_version": "4.1.1",
    "cpus": 2, "quick": True,
    "results": {
        "produce": {"R_produce": 0.82, "emit_per_s": 120000, "raw_per_s": 146000},
        "worker_throughput": {"R_framework": 0.25, "worker_jobs_per_s": 30000,
                              "raw_jobs_per_s": 120000},
        "latency": {"ratio_p99": 1.2, "worker_p99_ms": 3.1},
        "retry_lateness": {"p99_ms": 12.5, "max_ms": 40.0, "early": 0,
                           "delays": {"1s": {"p99_ms": 10.0}, "5s": {"p99_ms": 12.5},
                                      "30s": {"p99_ms": 8.0}}},
        "rss": {"min_mib": 60.5, "max_mib": 75.25, "jobs": 20000},
    },
    "errors": {"kafka_producer_perf": "RuntimeError: producer perf test failed"},
}


def test_rows_carry_values_targets_and_verdicts() -> None:
    """Each figure is looked up in its script's JSON and judged against its target."""
    rows = {r["label"]: r for r in _report().rows(SAMPLE)}
    assert rows["R_produce (emit / raw produce)"]["ok"] is True
    assert rows["R_framework (worker / raw consume)"]["ok"] is False
    assert rows["retry lateness p99, 5 s delay (ms)"]["value"] == 12.5
    assert rows["retries started early"]["ok"] is True
    assert rows["kafka-producer-perf-test (records/s)"]["value"] is None


def test_markdown_table_lists_every_row_and_failed_steps() -> None:
    """The markdown has a header row, one row per figure (n/a when missing) and the errors."""
    mod = _report()
    md = mod.render(SAMPLE)
    lines = md.splitlines()
    assert "| figure | value | target | met |" in lines
    table = [ln for ln in lines if ln.startswith("| ") and "figure" not in ln]
    assert len(table) == len(mod.ROWS)
    assert "| R_produce (emit / raw produce) | 0.820 | >= 0.7 | yes |" in lines
    assert "| R_framework (worker / raw consume) | 0.250 | >= 0.8 | **no** |" in lines
    assert "| worker rate (jobs/s) | 30,000 |  |  |" in lines
    assert any("n/a" in ln and "kafka-producer-perf-test" in ln for ln in lines)
    assert "- `kafka_producer_perf`: RuntimeError: producer perf test failed" in lines
