"""The dashboard's own Prometheus metrics (docs/observability.md conventions: ``streamjobs_``
prefix, ``_total`` counters, base units), in a private registry served at ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

__all__ = ["WebMetrics"]


class WebMetrics:
    def __init__(self, index_stats: Callable[[], dict[str, Any]], index_ready: Callable[[], bool],
                 sse_clients: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("streamjobs_web_requests_total",
                                "HTTP requests served by the dashboard",
                                ["method", "route", "status"], registry=self.registry)
        self.actions = Counter("streamjobs_web_actions_total",
                               "Changing actions (reprocess, replay), by outcome",
                               ["action", "outcome"], registry=self.registry)
        Gauge("streamjobs_web_sse_clients", "Open server-sent event streams",
              registry=self.registry).set_function(sse_clients)
        Gauge("streamjobs_web_index_ready", "1 once the status index caught up at start-up",
              registry=self.registry).set_function(lambda: float(index_ready()))
        Gauge("streamjobs_web_index_jobs", "Jobs tracked by the status index",
              registry=self.registry).set_function(
                  lambda: float(_stat(index_stats(), "jobs", "jobs_tracked", "tracked")))
        Gauge("streamjobs_web_index_bytes", "Approximate memory of the status index",
              registry=self.registry).set_function(
                  lambda: float(_stat(index_stats(), "approx_bytes", "bytes", "memory_bytes")))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _stat(stats: dict[str, Any], *names: str) -> float:
    for n in names:
        v = stats.get(n)
        if isinstance(v, int | float):
            return float(v)
    return float("nan")
