"""Renders the one-run benchmark report (bench/results/report.json) as a markdown table.

    .venv/bin/python bench/report.py [bench/results/report.json]

``bench/run`` writes the JSON (every script's final JSON line, merged) and calls ``render``.
Each row is one figure with its target, measured in the same run on the same broker.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ROWS", "render", "rows"]

RESULTS = Path(__file__).resolve().parent / "results"

# (label, section, key path, target text, check or None)
Row = tuple[str, str, tuple[str, ...], str, Callable[[float], bool] | None]

ROWS: list[Row] = [
    ("R_produce (emit / raw produce)", "produce", ("R_produce",), ">= 0.7",
     lambda v: v >= 0.7),
    ("R_produce vs raw produce with the same headers", "produce", ("R_produce_vs_headers",),
     "", None),
    ("emit rate (jobs/s)", "produce", ("emit_per_s",), "", None),
    ("raw produce rate (records/s)", "produce", ("raw_per_s",), "", None),
    ("emit / raw produce + fastavro encode (median of rounds)", "produce",
     ("emit_vs_raw_encode",), ">= 1.0", lambda v: v >= 1.0),
    ("what the `sj` header adds to raw produce (µs/record)", "produce", ("headers_add_us",), "",
     None),
    ("emit_many(1000) / a loop of emit", "produce", ("emit_many_vs_emit",), ">= 1.0",
     lambda v: v >= 1.0),
    ("peers: `streamjobs worker` CLI / raw consume + fastavro decode + store_offsets", "peers",
     ("worker_vs_raw_decode",), ">= 0.8", lambda v: v >= 0.8),
    ("peers: `streamjobs worker` CLI / best peer consumer", "peers", ("worker_vs_best_peer",),
     ">= 1.5", lambda v: v >= 1.5),
    ("peers: `streamjobs worker` CLI / raw consume, no decode", "peers", ("worker_vs_raw",),
     "", None),
    ("peers: emit / raw produce + fastavro encode", "peers", ("emit_vs_raw_encode",), ">= 1.0",
     lambda v: v >= 1.0),
    ("peers: emit / best peer producer (payloads encoded per record)", "peers",
     ("emit_vs_best_peer",), ">= 1.5", lambda v: v >= 1.5),
    ("peers: emit / best peer producer handed pre-encoded bytes", "peers",
     ("emit_vs_best_peer_preencoded",), "", None),
    ("peers: emit / raw produce of pre-encoded bytes", "peers", ("emit_vs_raw_produce",), "",
     None),
    ("peers: emit_many(1000) / emit", "peers", ("emit_many_vs_emit",), ">= 1.0",
     lambda v: v >= 1.0),
    *[(f"peers: {label} (records/s)", "peers", ("per_s", key), "", None) for key, label in (
        ("raw", "raw consume(1000), no decode"),
        ("raw_decode", "raw consume + fastavro decode + store_offsets"),
        ("streamjobs_worker", "`streamjobs worker` CLI as shipped"),
        ("faststream", "FastStream subscriber (AckPolicy.ACK)"),
        ("faststream_batch", "FastStream batch subscriber (AckPolicy.ACK)"),
        ("quix", "Quix Streams Application (at-least-once)"),
        ("raw_produce", "raw produce() of pre-encoded bytes"),
        ("raw_encode", "raw produce + fastavro encode"),
        ("emit", "Producer.emit"),
        ("emit_many", "Producer.emit_many(1000)"),
        ("faststream_publish", "FastStream publish"),
        ("quix_produce", "Quix Streams producer, pre-encoded bytes"),
        ("quix_produce_avro", "Quix Streams producer + its AvroSerializer"))],
    ("R_framework (worker / raw consume)", "worker_throughput", ("R_framework",), ">= 0.8",
     lambda v: v >= 0.8),
    ("R_framework with listeners", "worker_throughput", ("R_framework_with_listeners",), "",
     None),
    ("default listeners: worker with them / without (same round)", "worker_throughput",
     ("R_listeners",), ">= 0.9", lambda v: v >= 0.9),
    ("default listeners, CPU: worker CPU per job without them / with them", "worker_throughput",
     ("R_listeners_cpu",), ">= 0.9", lambda v: v >= 0.9),
    ("worker CPU per job, no listeners (µs, all threads)", "worker_throughput",
     ("cpu_us_per_job",), "", None),
    ("worker CPU per job, default listeners (µs, all threads)", "worker_throughput",
     ("cpu_us_per_job_with_listeners",), "", None),
    ("R_framework vs raw consume reading the same headers", "worker_throughput",
     ("R_framework_vs_headers",), "", None),
    ("worker rate (jobs/s)", "worker_throughput", ("worker_jobs_per_s",), "", None),
    ("raw consume rate (records/s)", "worker_throughput", ("raw_jobs_per_s",), "", None),
    ("what reading headers adds to raw consume (µs/record)", "worker_throughput",
     ("headers_us",), "", None),
    ("R_framework ceiling: raw consume reading the headers / raw consume", "worker_throughput",
     ("headers_ceiling",), "", None),
    ("latency p99 ratio (worker / raw consumer running alongside)", "latency",
     ("ratio_p99_alongside",), "<= 1.5", lambda v: v <= 1.5),
    ("latency p99, worker (ms)", "latency", ("worker_p99_ms",), "", None),
    ("latency p99, raw consumer alongside (ms)", "latency", ("raw_alongside_p99_ms",), "",
     None),
    ("latency p99 ratio (worker / raw consume run before it)", "latency", ("ratio_p99",), "",
     None),
    ("latency p99, raw consume run before the worker (ms)", "latency", ("raw_p99_ms",), "",
     None),
    ("latency p99 ratio vs one raw consumer of the job topic and its tiers", "latency",
     ("ratio_p99_same_topics",), "", None),
    ("latency p99, one raw consumer of the job topic and its tiers (ms)", "latency",
     ("raw_same_topics_p99_ms",), "", None),
    ("retry lateness p99, all delays (ms)", "retry_lateness", ("p99_ms",), "<= 1000",
     lambda v: v <= 1000),
    ("retry lateness p99, 1 s delay (ms)", "retry_lateness", ("delays", "1s", "p99_ms"), "",
     None),
    ("retry lateness p99, 5 s delay (ms)", "retry_lateness", ("delays", "5s", "p99_ms"), "",
     None),
    ("retry lateness p99, 30 s delay (ms)", "retry_lateness", ("delays", "30s", "p99_ms"), "",
     None),
    ("retry lateness max (ms)", "retry_lateness", ("max_ms",), "", None),
    ("retries started early", "retry_lateness", ("early",), "== 0", lambda v: v == 0),
    ("follow-ups: exactly-once / at-least-once throughput (R_eos_alo)", "followups",
     ("R_eos_alo",), ">= 0.5", lambda v: v >= 0.5),
    ("follow-ups: at-least-once / no follow-ups throughput", "followups", ("R_alo_none",), "",
     None),
    ("key-strict / key ordering throughput, 1% of jobs retried", "followups",
     ("R_strict_key",), ">= 0.8", lambda v: v >= 0.8),
    ("priority lanes: high job p99 saturated with low / idle (weighted, the default)",
     "priorities", ("weighted_ratio_p99",), "<= 2", lambda v: v <= 2),
    ("priority lanes: high job p99 saturated with low / idle (strict)", "priorities",
     ("strict_ratio_p99",), "<= 2", lambda v: v <= 2),
    ("priority lanes: high job p99 on the saturated worker, weighted (ms)", "priorities",
     ("weighted_sat_p99_ms",), "", None),
    ("priority lanes: high job p99 on the idle worker, weighted (ms)", "priorities",
     ("weighted_idle_p99_ms",), "", None),
    ("priority lanes: low jobs/s during the high trickle / alone, weighted", "priorities",
     ("weighted_low_share",), "", None),
    ("priority lanes: low jobs/s during the high trickle / alone, strict", "priorities",
     ("strict_low_share",), "", None),
    ("async handlers awaiting 20 ms, concurrency 500: rate / Little's-law limit", "handlers",
     ("io_async", "ratio"), ">= 0.9", lambda v: v >= 0.9),
    ("async handlers awaiting 20 ms, concurrency 500 (jobs/s; limit 25,000)", "handlers",
     ("io_async", "jobs_per_s"), "", None),
    ("async handlers awaiting 20 ms, concurrency 500: CPU per job (µs, all threads)",
     "handlers", ("io_async", "cpu_us_per_job"), "", None),
    ("load average during the async phase (2 CPUs)", "handlers", ("io_async", "load_avg"), "",
     None),
    ("sync handlers sleeping 20 ms, concurrency 64: rate / Little's-law limit", "handlers",
     ("io_sync", "ratio"), ">= 0.9", lambda v: v >= 0.9),
    ("sync handlers sleeping 20 ms, concurrency 64 (jobs/s; limit 3,200)", "handlers",
     ("io_sync", "jobs_per_s"), "", None),
    ("CPU-bound 1 ms handlers: --processes 2 / --processes 1", "handlers",
     ("cpu", "speedup"), ">= 1.7", lambda v: v >= 1.7),
    ("CPU-bound 1 ms handlers: --processes 2 while both run jobs / --processes 1", "handlers",
     ("cpu", "speedup_all_running"), "", None),
    ("CPU-bound 1 ms handlers, --processes 1 (jobs/s)", "handlers", ("cpu", "p1", "jobs_per_s"),
     "", None),
    ("CPU-bound 1 ms handlers, --processes 2 (jobs/s)", "handlers", ("cpu", "p2", "jobs_per_s"),
     "", None),
    ("load average during the CPU-bound phase (2 CPUs)", "handlers", ("cpu", "load_avg"), "",
     None),
    ("job status: worker recording every transition / recording none", "status",
     ("R_status_all",), ">= 0.7", lambda v: v >= 0.7),
    ("job status: worker recording failures only / recording none", "status",
     ("R_status_failures",), ">= 0.95", lambda v: v >= 0.95),
    ("job status, CPU: worker CPU per job recording none / every transition", "status",
     ("R_status_all_cpu",), "", None),
    ("job status, CPU: worker CPU per job recording none / failures only", "status",
     ("R_status_failures_cpu",), "", None),
    ("job status: worker rate recording none (jobs/s)", "status", ("none_jobs_per_s",), "",
     None),
    ("job status: worker CPU per job recording none (µs, all threads)", "status",
     ("cpu_us_per_job_none",), "", None),
    ("job status: worker CPU per job recording every transition (µs, all threads)", "status",
     ("cpu_us_per_job_all",), "", None),
    ("job status: worker rate recording every transition (jobs/s)", "status",
     ("all_jobs_per_s",), "", None),
    ("status index memory per million tracked jobs (MiB, RSS growth)", "status",
     ("index_rss_mib_per_million_jobs",), "", None),
    ("status index bytes per tracked job (RSS growth)", "status",
     ("index_rss_bytes_per_job",), "", None),
    ("status index bytes per tracked job (its own estimate)", "status",
     ("index_approx_bytes_per_job",), "", None),
    ("status index bytes per tracked job (Python heap, tracemalloc)", "status",
     ("index_heap_bytes_per_job",), "", None),
    ("status index start-up (s)", "status", ("index_startup_s",), "", None),
    ("status records the index started from", "status", ("index_records",), "", None),
    ("status index start-up per million records (s)", "status",
     ("index_startup_s_per_million_records",), "", None),
    ("SSE delay p99, transition written -> on /api/events at 1,000 jobs/s (ms)", "web_sse",
     ("sse_p99_ms",), "<= 1000", lambda v: v <= 1000),
    ("SSE delay p99 on per-job streams /api/jobs/{id}/events (ms)", "web_sse",
     ("per_job_p99_ms",), "", None),
    ("SSE delay p99 ratio (SSE / raw consumer of the status topic)", "web_sse", ("ratio_p99",),
     "", None),
    ("status topic raw consume delay p99 (ms)", "web_sse", ("raw_p99_ms",), "", None),
    ("R_emit, registry / single-object framing", "registry", ("R_emit",), ">= 0.95",
     lambda v: v >= 0.95),
    ("R_worker, registry / single-object framing", "registry", ("R_worker",), ">= 0.95",
     lambda v: v >= 0.95),
    ("R_emit, emit's own work (client stubbed): single-object µs / registry µs", "registry",
     ("R_emit_stubbed",), "", None),
    ("emit rate, registry framing (jobs/s)", "registry", ("emit_registry_per_s",), "", None),
    ("worker rate, registry framing (jobs/s)", "registry", ("worker_registry_per_s",), "",
     None),
    ("registry requests of one emit run (N jobs)", "registry", ("registry_requests_emit",),
     "<= 1", lambda v: v <= 1),
    ("registry requests of one worker run (N jobs)", "registry",
     ("registry_requests_worker",), "<= 1", lambda v: v <= 1),
    ("worker RSS min while draining (MiB)", "rss", ("min_mib",), "", None),
    ("worker RSS max while draining (MiB)", "rss", ("max_mib",), "", None),
    ("worker drain, real CLI, incl. start-up (jobs/s)", "rss", ("jobs_per_s",), "", None),
    ("backlog drained (jobs)", "rss", ("jobs",), "", None),
    ("kafka-producer-perf-test (records/s)", "kafka_producer_perf", ("records_per_s",), "",
     None),
    ("kafka-consumer-perf-test (records/s)", "kafka_consumer_perf", ("records_per_s",), "",
     None),
]


def _get(data: dict[str, Any], section: str, path: tuple[str, ...]) -> Any:
    node: Any = data.get("results", {}).get(section)
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per row: label, value (None when that script failed), target, ok."""
    out = []
    for label, section, path, target, ok in ROWS:
        value = _get(report, section, path)
        verdict = None
        if ok is not None and isinstance(value, int | float):
            verdict = ok(float(value))
        out.append({"label": label, "section": section, "value": value, "target": target,
                    "ok": verdict})
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    """The markdown report: a header naming the run, the table, then any script failures."""
    lines = [f"Benchmark run {report.get('started_at', '?')} on {report.get('broker', '?')} "
             f"(Kafka {report.get('kafka_version', '?')}, {report.get('cpus', '?')} CPUs"
             f"{', quick' if report.get('quick') else ''}).", "",
             "| figure | value | target | met |", "|---|---:|---|---|"]
    for r in rows(report):
        met = {True: "yes", False: "**no**", None: ""}[r["ok"]]
        lines.append(f"| {r['label']} | {_fmt(r['value'])} | {r['target']} | {met} |")
    errors = report.get("errors") or {}
    if errors:
        lines += ["", "Failed steps:"]
        lines += [f"- `{name}`: {msg}" for name, msg in sorted(errors.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "report.json"
    print(render(json.loads(path.read_text())), end="")


if __name__ == "__main__":
    main()
