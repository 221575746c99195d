"""Consumer lag without Kafka's Java tools: where each group stands against the log end, and
how many jobs wait in the wait tiers.

``group_lag`` gives, per partition, the committed offset, the log end offset and the lag, with
the same figures as ``kafka-consumer-groups --describe`` (the partitions with a committed offset
or assigned to a member; end = the high watermark; lag = end - committed). Where a partition is
assigned but has no committed offset yet, Kafka's tool prints ``-``; we count the records a
worker starting there would read (``auto.offset.reset=earliest``: end - log start), which is
what KEDA's Kafka scaler does with ``offsetResetPolicy: earliest`` too (docs/observability.md).

``wait_backlog`` reads the wait tiers ``<topic>.retry.<tier>`` of a catalogue: the jobs the
group's wait consumers (group ``<group>.wait``) have not finished yet, and when the first of
them is due (``sj-due-at`` of the record at each partition's committed offset).

Reads only: admin requests and, for due times, one record per non-empty tier partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .. import _headers as h
from .._config import KafkaConfig
from .._connection import AdminClient, ConsumerGroupState, admin_call
from .._connection import admin as admin_client
from .._durations import format_duration
from .._names import retry_topic
from .._scan import Range, check_reachable, committed, partitions_of, scan, watermarks
from .._schemas.catalogue import Catalogue
from ..errors import GroupNotFound, TopicNotFound

__all__ = [
    "GroupLag",
    "Member",
    "PartitionLag",
    "TierBacklog",
    "group_lag",
    "groups_lag",
    "list_groups",
    "wait_backlog",
]

DEFAULT_TIMEOUT = 10.0



@dataclass(frozen=True)
class Member:
    """One member of a group, as the coordinator describes it."""

    member_id: str
    client_id: str
    host: str
    assignments: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PartitionLag:
    """``committed`` is None when the group has no committed offset for the partition."""

    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True)
class GroupLag:
    group: str
    state: str  # "stable", "empty", "dead", "preparing_rebalancing", ...
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({p.topic for p in self.partitions}))

    def owner(self, topic: str, partition: int) -> Member | None:
        """The member the partition is assigned to, if any."""
        for m in self.members:
            if (topic, partition) in m.assignments:
                return m
        return None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["total_lag"] = self.total_lag
        return out


@dataclass(frozen=True)
class TierBacklog:
    """Jobs waiting in one wait-tier topic: not yet finished by the group's wait consumers
    (they include jobs woken and still running). ``next_due_ms``: the earliest ``sj-due-at``
    among the records at the partitions' committed offsets (None when nothing waits)."""

    topic: str
    target: str
    tier: str
    waiting: int
    next_due_ms: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_groups(config: KafkaConfig, *, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Ids of every consumer group the cluster knows, sorted."""
    admin = admin_client(config)
    check_reachable(admin, config, timeout)

    def call() -> object:
        return admin.list_consumer_groups(request_timeout=timeout).result()

    res = admin_call("list consumer groups", call)
    return sorted(g.group_id for g in getattr(res, "valid", None) or [])


def group_lag(config: KafkaConfig, group: str, *, timeout: float = DEFAULT_TIMEOUT,
              admin: AdminClient | None = None) -> GroupLag:
    """State, members and per-partition lag of ``group``; GroupNotFound when it has neither
    members nor committed offsets."""
    if admin is None:
        admin = admin_client(config)
        check_reachable(admin, config, timeout)
    state, members = _describe(admin, group, timeout)
    offsets = committed(admin, group, timeout)
    if not members and not offsets and state in ("dead", "unknown"):
        raise GroupNotFound(group)
    parts = set(offsets)
    for m in members:
        parts.update(m.assignments)
    # A group keeps its commits on a topic after the topic is deleted: such partitions have no
    # end offset to compare with, so they are left out (as no lag to show).
    existing = admin.list_topics(timeout=timeout).topics
    parts = {tp for tp in parts if tp[0] in existing and tp[1] in existing[tp[0]].partitions}
    marks = watermarks(admin, config, sorted(parts))
    rows = []
    for tp in sorted(parts):
        low, high = marks[tp]
        cur = offsets.get(tp)
        lag = max(0, high - (cur if cur is not None else low))
        rows.append(PartitionLag(tp[0], tp[1], cur, high, lag))
    return GroupLag(group, state, members, tuple(rows))


def groups_lag(config: KafkaConfig, groups: Iterable[str], *,
               timeout: float = DEFAULT_TIMEOUT) -> list[GroupLag]:
    """``group_lag`` of each group that still exists (one admin client for all)."""
    admin = admin_client(config)
    out = []
    for group in groups:
        try:
            out.append(group_lag(config, group, timeout=timeout, admin=admin))
        except GroupNotFound:
            continue  # deleted between the listing and now
    return out


def wait_backlog(config: KafkaConfig, catalogue: Catalogue, group: str, *,
                 timeout: float = DEFAULT_TIMEOUT) -> list[TierBacklog]:
    """Per wait-tier topic of ``catalogue`` (missing topics skipped): jobs the wait consumers
    of ``group`` have not finished, and the next due time."""
    from .._names import wait_group

    admin = admin_client(config)
    tiers: list[tuple[str, str, float]] = []  # (tier topic, job topic, seconds)
    parts: list[tuple[str, int]] = []
    for target in catalogue.job_topics():
        for seconds in catalogue.wait_tiers(target):
            topic = retry_topic(target, seconds)
            try:
                parts.extend((topic, p) for p in partitions_of(admin, config, topic, timeout))
            except TopicNotFound:
                continue
            tiers.append((topic, target, seconds))
    offsets = committed(admin, wait_group(group), timeout)
    marks = watermarks(admin, config, parts)
    waiting: dict[str, int] = {}
    heads: list[Range] = []
    for tp in parts:
        low, high = marks[tp]
        start = max(offsets.get(tp, low), low)
        n = max(0, high - start)
        waiting[tp[0]] = waiting.get(tp[0], 0) + n
        if n:
            heads.append(Range(tp[0], tp[1], start, start + 1))
    due: dict[str, int] = {}
    for msg in scan(config, heads, idle_timeout=timeout):
        hdrs: Any = msg.headers()  # produced by the worker: a list of (name, bytes)
        at = h.get_int(hdrs, h.DUE_AT)
        topic = str(msg.topic())
        if at is not None and (topic not in due or at < due[topic]):
            due[topic] = at
    return [TierBacklog(topic, target, format_duration(seconds), waiting.get(topic, 0),
                        due.get(topic)) for topic, target, seconds in tiers]


def _describe(admin: AdminClient, group: str, timeout: float) -> tuple[str, tuple[Member, ...]]:
    def call() -> object:
        return admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()

    desc = admin_call(f"describe group {group!r}", call)
    state = getattr(desc, "state", None)
    name = state.name.lower() if isinstance(state, ConsumerGroupState) else "unknown"
    members = []
    for m in getattr(desc, "members", None) or []:
        assignment = getattr(m, "assignment", None)
        tps = getattr(assignment, "topic_partitions", None) or []
        members.append(Member(str(m.member_id), str(m.client_id or ""), str(m.host or ""),
                              tuple(sorted((tp.topic, tp.partition) for tp in tps))))
    return name, tuple(sorted(members, key=lambda m: (m.client_id, m.member_id)))
