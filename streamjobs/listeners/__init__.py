"""Listeners that turn worker events (``streamjobs.events``) into logs, metrics, health and
worker reports (the dashboard's view of the fleet).

``install_default_listeners`` is what the worker calls; each listener can also be attached
on its own (``listener.attach(bus)``) or replaced by a user's own ``bus.subscribe(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from ..config import KafkaConfig
from ..events import EventBus
from ..reports import reports_topic
from .health import HealthListener, HealthServer, serve
from .logging import LogListener, configure_logging
from .metrics import MetricsListener
from .reports import ReportListener

__all__ = [
    "HealthListener",
    "HealthServer",
    "LogListener",
    "MetricsListener",
    "Observability",
    "ReportListener",
    "configure_logging",
    "install_default_listeners",
    "serve",
]


@dataclass(slots=True)
class Observability:
    """The default listeners of one worker and the HTTP server, if any (close it on exit)."""

    bus: EventBus
    registry: CollectorRegistry
    log: LogListener
    metrics: MetricsListener
    health: HealthListener
    server: HealthServer | None
    reports: ReportListener | None = None

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None

    def close(self) -> None:
        if self.reports is not None:
            self.reports.close()  # its final "stopped" report
        if self.server is not None:
            self.server.close()


def install_default_listeners(
    bus: EventBus,
    *,
    metrics_port: int | None,
    log_level: str = "info",
    registry: CollectorRegistry | None = None,
    liveness_ttl: float = 30.0,
    log_json: bool = True,
    kafka: KafkaConfig | None = None,
    topic_prefix: str = "",
) -> Observability:
    """Configure logging, attach the log, metrics and health listeners to ``bus`` and, when
    ``metrics_port`` is not None, serve /healthz, /readyz and /metrics on it (0 = any port).
    With ``kafka``, also publish worker reports to ``reports_topic(topic_prefix)``.

    ``registry`` defaults to a fresh ``CollectorRegistry`` per worker (never the process-global
    one), so several workers can run in one process (tests) without duplicate metrics.
    """
    configure_logging(log_level, json=log_json)
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    log = LogListener()
    metrics = MetricsListener(registry)
    health = HealthListener(liveness_ttl)
    log.attach(bus)
    metrics.attach(bus)
    health.attach(bus)
    reports = None
    if kafka is not None:
        reports = ReportListener(kafka, reports_topic(topic_prefix))
        reports.attach(bus)
    server = serve(metrics_port, health, registry) if metrics_port is not None else None
    return Observability(bus, registry, log, metrics, health, server, reports)
