"""Listeners that turn worker events (``streamjobs.events``) into logs, metrics, health and
worker reports (the dashboard's view of the fleet).

``install_default_listeners`` is what the worker calls; each listener can also be attached
on its own (``listener.attach(bus)``) or replaced by a user's own ``bus.subscribe(...)``.
A worker whose bus has no listener (``Worker(app, bus=EventBus())``, ``streamjobs worker
--listeners none``) builds no event it would not deliver: the fastest way to run.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from .._config import KafkaConfig
from .._names import reports_topic
from ..errors import ConfigError
from ..events import EventBus
from ._health import HealthListener, HealthServer, serve
from ._logging import LogListener, configure_logging
from ._metrics import MetricsListener
from ._reports import ReportListener

__all__ = [
    "HealthListener",
    "HealthServer",
    "LogListener",
    "MetricsListener",
    "Observability",
    "ReportListener",
    "configure_logging",
    "install_default_listeners",
    "install_log_listener",
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


def install_log_listener(bus: EventBus, *, log_level: str = "info", log_json: bool = True,
                         job_log_level: str = "debug") -> LogListener:
    """Configure logging and attach only the ``LogListener`` (no metrics, no HTTP server)."""
    configure_logging(log_level, json=log_json)
    log = LogListener(job_level=job_log_level)
    log.attach(bus)
    return log


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
    job_log_level: str = "debug",
) -> Observability:
    """Configure logging, attach the log, metrics and health listeners to ``bus`` and, when
    ``metrics_port`` is not None, serve /healthz, /readyz and /metrics on it (0 = any free
    port, as the OS does; the address is logged and ``Observability.port`` has it). A port in
    use is a ``ConfigError`` naming ``metrics_port``. ``job_log_level``: see ``LogListener``.
    With ``kafka``, also publish worker reports to ``reports_topic(topic_prefix)``.

    ``registry`` defaults to a fresh ``CollectorRegistry`` per worker (never the process-global
    one), so several workers can run in one process (tests) without duplicate metrics.
    """
    log = install_log_listener(bus, log_level=log_level, log_json=log_json,
                               job_log_level=job_log_level)
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    metrics = MetricsListener(registry)
    health = HealthListener(liveness_ttl)
    metrics.attach(bus)
    health.attach(bus)
    server = None
    if metrics_port is not None:
        try:
            server = serve(metrics_port, health, registry)
        except OSError as exc:
            reason = ("already in use (another worker? 0 picks a free port)"
                      if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc))
            raise ConfigError("metrics_port", f"port {metrics_port}: {reason}") from None
        log.serving(server.host, server.port)
    reports = None
    if kafka is not None:
        reports = ReportListener(kafka, reports_topic(topic_prefix))
        reports.attach(bus)
    return Observability(bus, registry, log, metrics, health, server, reports)
