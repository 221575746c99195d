"""What the dashboard reads: the status index, the worker reports, and Kafka itself (lag,
wait tiers, dead-letter counts). Pages ask ``Sources``; nothing here renders anything.

The Kafka reads are blocking admin calls and scans: pages run them in a worker thread, and the
overview is cached for a few seconds so that many open dashboards cost one read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from .._avro.codec import Codec
from .._config import KafkaConfig
from .._names import reports_topic
from .._ops import dlq
from .._ops.lag import GroupLag, TierBacklog, group_lag, wait_backlog
from .._ops.reprocess import load_progress
from .._reports import ReportsView
from .._schemas.catalogue import Catalogue
from .._schemas.registry import RegistryConfig, SchemaRegistry
from .._status import StatusIndex, status_topic
from ..errors import BrokerUnavailable, StreamjobsError, TopicNotFound

__all__ = ["Index", "Reports", "Sources"]

OVERVIEW_TTL_S = 3.0
DLQ_STATS_TTL_S = 15.0  # counting dead letters reads their topics whole


class Index(Protocol):
    """What the dashboard uses of ``streamjobs._status.StatusIndex``."""

    @property
    def ready(self) -> bool: ...
    def start(self) -> None: ...
    def get(self, job_id: str) -> Any: ...
    def recent(self, limit: int = 50, state: str | None = None) -> list[Any]: ...
    def subscribe(self, callback: Callable[[Any], None]) -> Callable[[], None]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


class Reports(Protocol):
    """What the dashboard uses of ``streamjobs._reports.ReportsView``."""

    def start(self) -> None: ...
    def close(self) -> None: ...
    def workers(self, *, alive_within_s: float = 30) -> list[Any]: ...
    def rates_per_minute(self) -> dict[str, dict[str, float]]: ...


@dataclass
class Sources:
    config: KafkaConfig
    catalogue: Catalogue | None
    index: Index
    reports: Reports | None
    groups: tuple[str, ...] = ()  # shown even when no worker of theirs reports
    registry: RegistryConfig | None = None  # decodes registry-framed dead letters
    warnings: list[str] = field(default_factory=list)  # shown on the overview
    _started: bool = field(default=False, repr=False)
    _cache: tuple[float, dict[str, Any]] | None = field(default=None, repr=False)
    _dlq_cache: tuple[float, list[dict[str, Any]], list[str]] | None = field(default=None,
                                                                             repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def open(cls, config: KafkaConfig, catalogue: Catalogue | None, *, prefix: str = "",
             groups: tuple[str, ...] = (), registry: RegistryConfig | None = None) -> Sources:
        """The real sources for ``streamjobs web``: one status index, one reports view."""
        index = StatusIndex(config, status_topic(prefix))
        reports = ReportsView(config, reports_topic(prefix))
        return cls(config, catalogue, index, reports, groups, registry)

    @cached_property
    def codec(self) -> Codec | None:
        if self.catalogue is None:
            return None
        registry = SchemaRegistry(self.registry) if self.registry is not None else None
        return Codec(self.catalogue, registry=registry)

    def start(self) -> None:
        """Start following the topics (once). The index waits for a missing status topic by
        itself; without the reports topic the overview says so and shows no rates."""
        if self._started:
            return
        self._started = True
        self.index.start()
        if self.reports is not None:
            self._start_reports(self.reports)

    def _start_reports(self, reports: Reports, attempts: int = 8) -> None:
        # A topic just created answers "not leader" for a moment: retry that, not the rest.
        for attempt in range(attempts):
            try:
                reports.start()
                return
            except TopicNotFound as exc:
                problem = f"{exc}: create it with `streamjobs topics apply`"
                break
            except BrokerUnavailable:
                raise
            except StreamjobsError as exc:
                problem = str(exc)
                if attempt + 1 < attempts:
                    time.sleep(0.25 * (attempt + 1))
        self.warnings.append(f"no worker reports (rates, workers): {problem}")
        self.reports = None

    def close(self) -> None:
        self.index.close()
        if self.reports is not None:
            self.reports.close()

    # -- overview (blocking: call from a thread) ---------------------------------------------

    def overview(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._cache is not None and now - self._cache[0] < OVERVIEW_TTL_S:
                return self._cache[1]
            data = self._read_overview()
            self._cache = (time.monotonic(), data)
            return data

    def _read_overview(self) -> dict[str, Any]:
        errors: list[str] = []
        workers: list[Any] = []
        rates: dict[str, dict[str, float]] = {}
        if self.reports is not None:
            workers = self.reports.workers()
            rates = self.reports.rates_per_minute()
        in_flight: dict[str, int] = {}
        for w in workers:
            in_flight[w.group] = in_flight.get(w.group, 0) + w.in_flight
        groups = sorted({*self.groups, *(w.group for w in workers)})
        lags: list[GroupLag] = []
        tiers: list[TierBacklog] = []
        for g in groups:
            try:
                lags.append(self.group_lag(g))
                tiers.extend(self.wait_backlog(g))
            except StreamjobsError as exc:
                errors.append(f"group {g}: {exc}")
        errors = [*self.warnings, *errors]
        index_error = self.index.stats().get("error")
        if index_error:
            errors.append(f"status index: {index_error}")
        return {"rates": rates, "workers": workers, "in_flight": in_flight, "groups": lags,
                "tiers": tiers, "dead_letters": self.dead_letter_stats(errors),
                "index": self.index.stats(), "errors": errors,
                "at_ms": time.time_ns() // 1_000_000}

    def group_lag(self, group: str) -> GroupLag:
        return group_lag(self.config, group)

    def wait_backlog(self, group: str) -> list[TierBacklog]:
        if self.catalogue is None:
            return []
        return list(wait_backlog(self.config, self.catalogue, group))

    def dlq_topics(self) -> list[str]:
        if self.catalogue is None:
            return []
        return [dlq.dlq_name(t) for t in sorted(self.catalogue.job_topics())]

    def dead_letter_stats(self, errors: list[str]) -> list[dict[str, Any]]:
        cached = self._dlq_cache
        if cached is not None and time.monotonic() - cached[0] < DLQ_STATS_TTL_S:
            errors.extend(cached[2])
            return cached[1]
        mine: list[str] = []
        out = self._read_dead_letter_stats(mine)
        self._dlq_cache = (time.monotonic(), out, mine)
        errors.extend(mine)
        return out

    def _read_dead_letter_stats(self, errors: list[str]) -> list[dict[str, Any]]:
        out = []
        for topic in self.dlq_topics():
            try:
                done = load_progress(self.config, topic)
                out.append(dlq.stats(self.config, topic, done).as_dict())
            except TopicNotFound:
                continue
            except StreamjobsError as exc:
                errors.append(f"{topic}: {exc}")
        return out
