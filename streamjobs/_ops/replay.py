"""Re-running jobs: move a consumer group's offsets, or re-emit a range of records.

Two tools, for two situations (docs/replay.md):

- ``plan_reset`` / ``apply_reset``: move the committed offsets of a group whose workers are
  stopped (``streamjobs replay offsets``). Same semantics as Kafka's
  ``kafka-consumer-groups --reset-offsets``: targets are clamped to ``[log start, log end]``,
  a timestamp with no record at or after it resolves to the log end, ``--shift-by`` needs a
  committed offset, and a group with active members is refused.
- ``plan_range`` / ``emit_range``: copy the records of one partition's offset range to the end
  of the same partition, with ``sj-attempt`` reset and ``sj-replayed-from`` set, while the
  workers keep running (``streamjobs replay range``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Literal

from .. import _connection as connection
from .. import _headers as h
from .._config import KafkaConfig
from .._connection import (
    AdminClient,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    Message,
    TopicPartition,
    admin_call,
)
from .._connection import RdKafkaError as _RdKafkaError
from .._connection import admin as admin_client
from .._delivery import PRODUCER_SETTINGS, resend, unconfirmed
from .._durations import parse_ago
from .._scan import (
    Range,
    committed,
    offsets_for_time,
    partitions_of,
    scan,
    watermarks,
)
from .._status.record import Transition
from .._status.writer import StatusWriter
from ..errors import DeliveryFailed, GroupActive, KafkaError

__all__ = [
    "PartitionPlan",
    "RangePlan",
    "ResetPlan",
    "ResetSpec",
    "apply_reset",
    "emit_range",
    "parse_datetime",
    "parse_topic_spec",
    "parse_when",
    "plan_range",
    "plan_reset",
    "resolve",
]

Mode = Literal["to_offset", "to_datetime", "shift_by", "to_earliest", "to_latest"]


@dataclass(frozen=True)
class ResetSpec:
    """Where to move: ``mode`` and its ``value`` (offset, ms timestamp or shift)."""

    mode: Mode
    value: int = 0


@dataclass(frozen=True)
class PartitionPlan:
    topic: str
    partition: int
    current: int | None  # committed offset, None when the group has none
    new: int
    low: int
    high: int

    @property
    def rerun(self) -> int:
        """Records the group will process again (0 when moving forward or unknown)."""
        return max(0, self.current - self.new) if self.current is not None else 0

    @property
    def skipped(self) -> int:
        """Records the group will never process (moving forward past them)."""
        return max(0, self.new - self.current) if self.current is not None else 0


@dataclass(frozen=True)
class ResetPlan:
    group: str
    spec: ResetSpec
    partitions: tuple[PartitionPlan, ...]

    @property
    def rerun(self) -> int:
        return sum(p.rerun for p in self.partitions)

    def never_committed(self) -> tuple[str, ...]:
        """Topics of the plan on which the group has no committed offset at all: a typo in
        the group or topic name, or a group that never ran there."""
        seen: dict[str, bool] = {}
        for p in self.partitions:
            seen[p.topic] = seen.get(p.topic, False) or p.current is not None
        return tuple(t for t, any_committed in seen.items() if not any_committed)


# -- parsing -------------------------------------------------------------------------------

def parse_topic_spec(text: str) -> tuple[str, tuple[int, ...] | None]:
    """``"T"`` -> (T, None: every partition); ``"T:0,2"`` -> (T, (0, 2)). Kafka's syntax."""
    topic, sep, parts = text.partition(":")
    if not topic:
        raise ValueError(f"invalid topic {text!r}")
    if not sep:
        return topic, None
    try:
        ids = tuple(sorted({int(p) for p in parts.split(",") if p.strip()}))
    except ValueError:
        raise ValueError(f"invalid partition list in {text!r} (use T:0,1,2)") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"invalid partition list in {text!r} (use T:0,1,2)")
    return topic, ids


def parse_datetime(text: str) -> int:
    """ms since the epoch from ISO 8601 (``2024-05-01T12:00:00Z``, ``...+02:00``, a date).
    Without an offset the time is UTC, so the result never depends on the machine."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid datetime {text!r} (use ISO 8601, e.g. "
                         f"2024-05-01T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def parse_when(text: str, now: int | None = None) -> int:
    """ms since the epoch from an ISO 8601 datetime or a duration ago (``2h``, ``PT2H``)."""
    try:
        return parse_datetime(text)
    except ValueError:
        pass
    try:
        seconds = parse_ago(text)
    except ValueError:
        raise ValueError(f"invalid time {text!r} (use an ISO 8601 datetime such as "
                         f"2024-05-01T12:00:00Z or a duration ago such as 2h)") from None
    return (now_ms() if now is None else now) - round(seconds * 1000)


# -- offsets reset --------------------------------------------------------------------------

def check_inactive(admin: AdminClient, group: str) -> None:
    """GroupActive unless the group is Empty or Dead with no members (Kafka's rule)."""
    def describe() -> object:
        return admin.describe_consumer_groups([group], request_timeout=10)[group].result()

    desc = admin_call(f"describe group {group!r}", describe)
    state = getattr(desc, "state", None)
    members = list(getattr(desc, "members", None) or [])
    if members or state not in (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD):
        name = state.name.title() if isinstance(state, ConsumerGroupState) else str(state)
        raise GroupActive(group, name, len(members))


def resolve(spec: ResetSpec, current: int | None, low: int, high: int,
            at_time: int | None = None) -> int:
    """The new offset of one partition, as Kafka's ConsumerGroupCommand computes it.
    ``at_time``: for ``to_datetime``, the offset the broker found (None: no such record)."""
    if spec.mode == "to_earliest":
        return low
    if spec.mode == "to_latest":
        return high
    if spec.mode == "to_datetime":
        return high if at_time is None else at_time
    if spec.mode == "to_offset":
        target = spec.value
    else:  # shift_by
        if current is None:
            raise ValueError("cannot shift a partition that has no committed offset")
        target = current + spec.value
    return min(max(target, low), high)


def plan_reset(config: KafkaConfig, group: str,
               topics: Sequence[tuple[str, tuple[int, ...] | None]], spec: ResetSpec,
               *, admin: AdminClient | None = None) -> ResetPlan:
    """The per-partition plan; reads only. GroupActive when members are connected."""
    admin = admin or admin_client(config)
    parts: list[tuple[str, int]] = []
    for topic, wanted in topics:
        existing = partitions_of(admin, config, topic)
        for p in wanted if wanted is not None else existing:
            if p not in existing:
                raise ValueError(f"topic {topic!r} has no partition {p} "
                                 f"(partitions 0..{max(existing)})")
            parts.append((topic, p))
    check_inactive(admin, group)
    current = committed(admin, group)
    marks = watermarks(admin, config, parts)
    found: dict[tuple[str, int], int | None] = {}
    if spec.mode == "to_datetime":
        found = offsets_for_time(admin, config, parts, spec.value)
    plans = []
    for tp in parts:
        low, high = marks[tp]
        cur = current.get(tp)
        if spec.mode == "shift_by" and cur is None:
            raise ValueError(f"cannot shift {tp[0]}[{tp[1]}]: group {group!r} has no committed "
                             f"offset there")
        new = resolve(spec, cur, low, high, found.get(tp))
        plans.append(PartitionPlan(tp[0], tp[1], cur, new, low, high))
    return ResetPlan(group, spec, tuple(plans))


def apply_reset(config: KafkaConfig, plan: ResetPlan, *, admin: AdminClient | None = None
                ) -> None:
    """Commit the plan's offsets for the group, re-checking that it is still inactive."""
    admin = admin or admin_client(config)
    check_inactive(admin, plan.group)
    req = ConsumerGroupTopicPartitions(
        plan.group, [TopicPartition(p.topic, p.partition, p.new) for p in plan.partitions])

    def alter() -> object:
        return admin.alter_consumer_group_offsets([req], request_timeout=10)[plan.group].result()

    res = admin_call(f"alter offsets of {plan.group!r}", alter)
    for tp in getattr(res, "topic_partitions", None) or []:
        if tp.error is not None:
            raise KafkaError(f"{tp.topic}[{tp.partition}]: {tp.error.str()}",
                             code=tp.error.name(), topic=tp.topic)


# -- range re-emit --------------------------------------------------------------------------

@dataclass(frozen=True)
class RangePlan:
    """Offsets ``[start, end]`` (inclusive) of one partition, already clamped to the log."""

    topic: str
    partition: int
    start: int
    end: int
    low: int
    high: int

    @property
    def count(self) -> int:
        """Offsets in the range (records, unless compaction left gaps)."""
        return max(0, self.end - self.start + 1)


def plan_range(config: KafkaConfig, topic: str, partition: int, *,
               from_offset: int | None = None, to_offset: int | None = None,
               since_ms: int | None = None, until_ms: int | None = None,
               admin: AdminClient | None = None) -> RangePlan:
    """Resolve the range: offsets as given (inclusive), or ``since`` (first record at or after
    it) to ``until`` (last record before it); clamped to the records present now."""
    admin = admin or admin_client(config)
    if partition not in partitions_of(admin, config, topic):
        raise ValueError(f"topic {topic!r} has no partition {partition}")
    tp = (topic, partition)
    low, high = watermarks(admin, config, [tp])[tp]
    start = low if from_offset is None else from_offset
    end = high - 1 if to_offset is None else to_offset
    if since_ms is not None:
        found = offsets_for_time(admin, config, [tp], since_ms)[tp]
        start = max(start, high if found is None else found)
    if until_ms is not None:
        found = offsets_for_time(admin, config, [tp], until_ms)[tp]
        end = min(end, (high if found is None else found) - 1)
    return RangePlan(topic, partition, max(start, low), min(end, high - 1), low, high)


def replay_headers(hdrs: Iterable[tuple[str, bytes | None]], origin: str,
                   timestamp_ms: int = 0) -> h.Headers:
    """Original headers in the rich form (a compact header expanded with ``timestamp_ms``, the
    source record's, as its created-at: the copy gets a new timestamp), the attempt reset and
    the replay link set (a replayed record that is replayed again links to its latest
    source)."""
    return h.replace(h.expand(hdrs, timestamp_ms), {h.ATTEMPT: "1", h.REPLAYED_FROM: origin})


def emit_range(config: KafkaConfig, plan: RangePlan, *,
               progress: Callable[[int], None] | None = None,
               status_prefix: str | None = None) -> int:
    """Re-produce every record of the range to the end of the same partition; returns the
    number acknowledged. DeliveryFailed if the broker refused any (some may be written).
    With ``status_prefix`` (the environment's topic prefix) each job gets a ``replayed``
    record in that environment's status topic, when it exists."""
    producer = connection.producer(config, {**PRODUCER_SETTINGS, "linger.ms": 5})
    status = None if status_prefix is None else StatusWriter.open(producer, status_prefix)
    failures: list[str] = []
    acked = 0

    def on_delivery(hdrs: list[tuple[str, str | bytes | None]], err: _RdKafkaError | None,
                    msg: Message) -> None:
        nonlocal acked
        if err is not None:
            failures.append(err.str())
        elif unconfirmed(err, msg):
            if (why := resend(producer, msg, hdrs, partial(on_delivery, hdrs))) is not None:
                failures.append(why)
        else:
            acked += 1

    rng = Range(plan.topic, plan.partition, plan.start, plan.end + 1)
    for msg in scan(config, [rng]):
        origin = f"{plan.topic}/{plan.partition}/{msg.offset()}"
        if status is not None:
            _record_replayed(status, msg, plan, origin)
        hdrs: list[tuple[str, str | bytes | None]] = list(
            replay_headers(_headers(msg), origin, msg.timestamp()[1]))
        connection.until_queued(producer, partial(
            producer.produce, plan.topic, value=msg.value(), key=msg.key(),
            partition=plan.partition, headers=hdrs, on_delivery=partial(on_delivery, hdrs)),
            step=0.1)
        producer.poll(0)
        if progress is not None:
            progress(1)
    remaining = producer.flush(30)
    if remaining or failures:
        detail = failures[0] if failures else f"{remaining} record(s) unacknowledged"
        raise DeliveryFailed(f"replay to {plan.topic}[{plan.partition}]: {acked} written, "
                             f"{len(failures) + remaining} failed: {detail}", topic=plan.topic)
    return acked


def _record_replayed(status: StatusWriter, msg: Message, plan: RangePlan, origin: str) -> None:
    meta = h.JobMeta.from_headers(_headers(msg))
    job_id = meta.job_id
    if job_id:
        status.send(job_id, meta.job_type or "", Transition(
            "replayed", now_ms(), 1, topic=plan.topic, partition=plan.partition,
            reason=origin))


def _headers(msg: Message) -> h.Headers:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
