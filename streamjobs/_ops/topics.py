"""Plan and apply the topics a catalogue needs: job topics, their wait tiers and dead letters,
and the worker reports topic the dashboard reads.

``plan`` compares the desired topics with the cluster and lists changes; ``apply`` makes them.
Both are idempotent and never destructive: partitions only grow, replication factors and
unmanaged settings are left alone (a mismatch is reported as a ``warning``). See docs/topics.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._config import KafkaConfig
from .._connection import (
    AdminClient,
    AlterConfigOpType,
    ClientError,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
    translate,
)
from .._connection import admin as _admin
from .._durations import format_duration
from .._names import (
    dlq_topic,
    reports_topic,
    retry_topic,
    schedules_topic,
    status_topic,
    unique_topic,
)
from .._retry import old_tier_topics
from .._schemas.catalogue import Catalogue
from ..errors import BrokerUnavailable, ConfigError, KafkaError

__all__ = ["INFORMATIONAL", "Change", "TopicSpec", "apply", "desired_topics", "footprint",
           "plan"]

Role = Literal["job", "retry", "dlq", "status", "workers", "unique", "schedules"]
Action = Literal["create", "add_partitions", "alter_config", "warning", "removable"]
# Reported, never done by ``apply``: drift it leaves alone and topics nothing needs any more.
INFORMATIONAL: tuple[Action, ...] = ("warning", "removable")

DAY_MS = 86_400_000
# A waiting job must outlive a worker outage: wait tiers keep records at least a week.
WAIT_MIN_RETENTION_MS = 7 * DAY_MS
# Dead letters wait for a human: a month, or the job topic's retention if longer (-1: forever).
DLQ_MIN_RETENTION_MS = 30 * DAY_MS
# The status topic (docs/status.md): job ids hash to its partitions, so their number is fixed
# once created. Compacted AND deleted: a job's records stay whole for a day
# (min.compaction.lag.ms), then only its last state per key is kept, for at most 30 days.
STATUS_PARTITIONS = 6
STATUS_CONFIG: dict[str, str] = {
    "cleanup.policy": "compact,delete",
    "min.compaction.lag.ms": str(DAY_MS),
    "retention.ms": str(30 * DAY_MS),
    "segment.ms": str(DAY_MS // 4),
    # Broker time: a lookup starts at the offset for the job id's creation time.
    "message.timestamp.type": "LogAppendTime",
}
# Worker reports: the latest per worker (compact), nothing older than an hour (delete); small
# segments so that both actually happen (a segment is cleaned only once closed).
WORKERS_CONFIG = {"cleanup.policy": "compact,delete", "retention.ms": str(3_600_000),
                  "segment.ms": str(600_000)}
# Seen sets of unique jobs: entries older than the window are useless, kept twice as long
# (at least an hour) so a worker restart inside the window always finds them.
UNIQUE_MIN_RETENTION_MS = 3_600_000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    role: Role
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One step of a plan. ``warning`` entries are drift ``apply`` will not touch."""

    topic: str
    action: Action
    detail: str
    role: Role
    partitions: int | None = None  # create / add_partitions: the new total
    replication_factor: int | None = None  # create
    config: Mapping[str, str] = field(default_factory=dict)  # create: all; alter: what changes

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "action": self.action, "role": self.role,
                "detail": self.detail, "partitions": self.partitions,
                "replication_factor": self.replication_factor, "config": dict(self.config)}


def _at_least(retention_ms: int | None, minimum: int) -> str:
    if retention_ms == -1:
        return "-1"
    return str(max(retention_ms or 0, minimum))


def desired_topics(catalogue: Catalogue) -> list[TopicSpec]:
    """Every topic the catalogue needs: each job topic followed by its tiers, DLQ and (for
    unique jobs and schedule targets) seen-set topic; then the schedule topic, if any, the
    status topic (``<prefix>streamjobs.status``) and the worker reports topic (under the
    catalogue's topic prefix).

    Wait tiers use ``LogAppendTime``: the worker's due-time logic relies on broker-assigned,
    per-partition monotonic timestamps (docs/DESIGN.md "Topics")."""
    out: list[TopicSpec] = []
    for topic, s in catalogue.job_topics().items():
        job_cfg = {} if s.retention_ms is None else {"retention.ms": str(s.retention_ms)}
        out.append(TopicSpec(topic, "job", s.partitions, s.replication_factor, job_cfg))
        wait_cfg = {"message.timestamp.type": "LogAppendTime",
                    "retention.ms": _at_least(s.retention_ms, WAIT_MIN_RETENTION_MS)}
        out.extend(TopicSpec(retry_topic(topic, tier), "retry", s.partitions,
                             s.replication_factor, wait_cfg)
                   for tier in catalogue.wait_tiers(topic))
        out.append(TopicSpec(dlq_topic(topic), "dlq", s.partitions, s.replication_factor,
                             {"retention.ms": _at_least(s.retention_ms, DLQ_MIN_RETENTION_MS)}))
        window = catalogue.unique_topics().get(topic)
        if window is not None:
            keep_ms = max(2 * round(window * 1000), UNIQUE_MIN_RETENTION_MS)
            out.append(TopicSpec(unique_topic(topic), "unique", s.partitions,
                                 s.replication_factor, {
                                     "cleanup.policy": "compact,delete",
                                     "retention.ms": str(keep_ms),
                                     "segment.ms": str(keep_ms // 2)}))
    replication = max((s.replication_factor for s in catalogue.job_topics().values()), default=1)
    out.append(TopicSpec(status_topic(catalogue.topic_prefix), "status", STATUS_PARTITIONS,
                         replication, STATUS_CONFIG))
    out.append(TopicSpec(reports_topic(catalogue.topic_prefix), "workers", 1, replication,
                         WORKERS_CONFIG))
    if catalogue.schedules:
        out.append(TopicSpec(schedules_topic(catalogue.topic_prefix), "schedules", 1,
                             replication, {"cleanup.policy": "compact"}))
    return out


def plan(config: KafkaConfig, catalogue: Catalogue, *, timeout: float = 10) -> list[Change]:
    """What ``apply`` would do (plus warnings), without changing anything."""
    return _plan(_admin(config), catalogue, timeout)


def apply(config: KafkaConfig, catalogue: Catalogue, *, timeout: float = 30) -> list[Change]:
    """Create and alter topics until the cluster matches the catalogue; returns what was done
    (warnings included). Safe to run repeatedly and concurrently."""
    admin = _admin(config)
    changes = _plan(admin, catalogue, timeout)
    creates = [c for c in changes if c.action == "create"]
    grows = [c for c in changes if c.action == "add_partitions"]
    alters = [c for c in changes if c.action == "alter_config"]
    if creates:
        new = [NewTopic(c.topic, c.partitions or 1, c.replication_factor or 1,
                        config=dict(c.config)) for c in creates]
        _wait(admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout),
              timeout, ok={"TOPIC_ALREADY_EXISTS"})  # another apply won the race: fine
    if grows:
        parts = [NewPartitions(c.topic, c.partitions or 1) for c in grows]
        # INVALID_PARTITIONS: a concurrent apply already grew it (checked by the plan below).
        _wait(admin.create_partitions(parts, operation_timeout=timeout, request_timeout=timeout),
              timeout, ok={"INVALID_PARTITIONS"})
    if alters:
        resources = [ConfigResource(ResourceType.TOPIC, c.topic, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in c.config.items()]) for c in alters]
        _wait(admin.incremental_alter_configs(resources, request_timeout=timeout), timeout)
        _settle_configs(admin, alters, timeout)
    if creates or grows:
        _settle(admin, {c.topic: c.partitions or 1 for c in (*creates, *grows)}, timeout)
    return changes


# -- internals ------------------------------------------------------------------------------

def _settle(admin: AdminClient, expected: Mapping[str, int], timeout: float) -> None:
    """Wait until metadata shows every created or grown topic with its partitions, so clients
    started right after ``apply`` see them (metadata lags the admin request a little)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(timeout=timeout)
        behind = [t for t, n in expected.items()
                  if t not in meta.topics or len(meta.topics[t].partitions) < n]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topic {behind[0]!r} does not show {expected[behind[0]]} "
                             f"partitions after {timeout:g}s", topic=behind[0])
        time.sleep(0.2)


def _settle_configs(admin: AdminClient, alters: list[Change], timeout: float) -> None:
    """Wait until describe_configs shows the altered values (it lags the alter a little), so
    ``apply`` followed by ``plan`` reports nothing to do."""
    deadline = time.monotonic() + timeout
    while True:
        actual = _describe(admin, [c.topic for c in alters], timeout)
        behind = [c for c in alters
                  if any(actual.get(c.topic, {}).get(k) != v for k, v in c.config.items())]
        if not behind:
            return
        if time.monotonic() > deadline:
            raise KafkaError(f"topic {behind[0].topic!r}: {behind[0].detail} not visible after "
                             f"{timeout:g}s", topic=behind[0].topic)
        time.sleep(0.2)


def _plan(admin: AdminClient, catalogue: Catalogue, timeout: float) -> list[Change]:
    try:
        meta = admin.list_topics(timeout=timeout)
    except ClientError as exc:
        raise BrokerUnavailable(f"no Kafka broker answered within {timeout:g}s "
                                f"({exc.args[0].str()})", code=exc.args[0].name()) from None
    brokers = len(meta.brokers)
    desired = desired_topics(catalogue)
    existing = {s.name: meta.topics[s.name] for s in desired if s.name in meta.topics}
    actual_cfg = _describe(admin, list(existing), timeout)
    changes: list[Change] = []
    for spec in desired:
        tmeta = existing.get(spec.name)
        if tmeta is None:
            if spec.replication_factor > brokers:
                raise ConfigError("replication_factor", f"topic {spec.name!r} wants "
                                  f"{spec.replication_factor} replicas but the cluster has "
                                  f"{brokers} broker(s)")
            cfg = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
            changes.append(Change(spec.name, "create", f"{spec.partitions} partitions, "
                                  f"replication {spec.replication_factor}"
                                  f"{', ' + cfg if cfg else ''}", spec.role, spec.partitions,
                                  spec.replication_factor, dict(spec.config)))
            continue
        changes.extend(_drift(spec, tmeta, actual_cfg.get(spec.name, {})))
    for topic in catalogue.job_topics():
        old = old_tier_topics(topic, catalogue.wait_tiers(topic), meta.topics)
        changes.extend(Change(name, "removable", f"old wait tier ({format_duration(tier)}), no "
                              "longer written: workers still drain it; delete it once the "
                              "workers' <group>.wait has no lag on it", "retry")
                       for name, tier in old.items())
    return changes


def footprint(catalogue: Catalogue) -> dict[str, dict[str, Any]]:
    """Per job topic: the topics it needs (itself, its wait tiers, its DLQ) and their
    partitions, i.e. what its wait consumer reads besides the job topic itself."""
    out: dict[str, dict[str, Any]] = {}
    for topic, s in catalogue.job_topics().items():
        tiers = catalogue.wait_tiers(topic)
        out[topic] = {"topics": len(tiers) + 2,
                      "wait_tiers": [format_duration(t) for t in tiers],
                      "partitions": (len(tiers) + 2) * s.partitions,
                      "wait_partitions": len(tiers) * s.partitions}
    return out


def _drift(spec: TopicSpec, tmeta: Any, actual: Mapping[str, str]) -> list[Change]:
    out: list[Change] = []
    have = len(tmeta.partitions)
    if spec.role == "status":
        pass  # kept as created: job ids hash to the partitions it has (docs/status.md)
    elif spec.partitions > have:
        out.append(Change(spec.name, "add_partitions", f"partitions {have} -> "
                          f"{spec.partitions}", spec.role, partitions=spec.partitions))
    elif spec.partitions < have:
        out.append(Change(spec.name, "warning", f"has {have} partitions, catalogue says "
                          f"{spec.partitions}: partitions cannot shrink, left as is", spec.role))
    replicas = {len(p.replicas) for p in tmeta.partitions.values()}
    if replicas and max(replicas) != spec.replication_factor:
        out.append(Change(spec.name, "warning", f"replication factor {max(replicas)}, catalogue "
                          f"says {spec.replication_factor}: change it with a reassignment",
                          spec.role))
    differ = {k: v for k, v in spec.config.items() if actual.get(k) != v}
    if differ:
        detail = ", ".join(f"{k}: {actual.get(k)} -> {v}" for k, v in sorted(differ.items()))
        out.append(Change(spec.name, "alter_config", detail, spec.role, config=differ))
    return out


def _describe(admin: AdminClient, topics: list[str],
              timeout: float) -> dict[str, dict[str, str]]:
    if not topics:
        return {}
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    out: dict[str, dict[str, str]] = {}
    for res, fut in futures.items():
        try:
            entries = fut.result(timeout=timeout + 1)
        except ClientError as exc:
            raise translate(exc, f"cannot describe topic {res.name!r}",
                              topic=res.name) from None
        except TimeoutError:
            raise BrokerUnavailable(f"no answer about topic {res.name!r} within {timeout:g}s",
                                    code="_TIMED_OUT", topic=res.name) from None
        out[res.name] = {k: e.value for k, e in entries.items() if e.value is not None}
    return out


def _wait(futures: Mapping[Any, Any], timeout: float, ok: frozenset[str] | set[str] = frozenset(),
          ) -> None:
    for name, fut in futures.items():
        topic = getattr(name, "name", name)
        try:
            fut.result(timeout=timeout + 1)
        except ClientError as exc:
            err = exc.args[0]
            if err.name() in ok:
                continue
            raise translate(exc, f"topic {topic!r}", topic=topic) from None
        except TimeoutError:
            raise BrokerUnavailable(f"no answer about topic {topic!r} within {timeout:g}s",
                                    code="_TIMED_OUT", topic=topic) from None
