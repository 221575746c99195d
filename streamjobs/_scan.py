"""Bounded reads of topic partitions, for the tools that inspect topics (dlq, replay).

A scan reads each partition from a start offset up to an end captured *before* reading starts
(the high watermark, or less), so it always terminates, even while producers keep writing, and
never waits on an empty partition. Partitions are assigned directly: no consumer group joins,
nothing is committed.

Also the small admin look-ups those tools share: partitions of a topic (``TopicNotFound``,
``BrokerUnavailable``), watermarks, offsets for a timestamp, a group's committed offsets.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ._config import KafkaConfig
from ._connection import (
    AdminClient,
    ClientError,
    Consumer,
    ConsumerGroupTopicPartitions,
    Message,
    OffsetSpec,
    TopicPartition,
    admin_call,
)
from ._connection import RdKafkaError as _RdKafkaError
from ._connection import consumer as _consumer
from ._names import SCAN_GROUP
from .errors import BrokerUnavailable, KafkaError, TopicNotFound

__all__ = [
    "NOT_FOUND",
    "Range",
    "check_reachable",
    "committed",
    "offsets_for_time",
    "partitions_of",
    "scan",
    "topic_exists",
    "watermarks",
]

NOT_FOUND = "UNKNOWN_TOPIC_OR_PART"
DEFAULT_TIMEOUT = 10.0



@dataclass(frozen=True)
class Range:
    """Offsets ``[start, end)`` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def _unavailable(config: KafkaConfig, exc: BaseException) -> BrokerUnavailable:
    # A KafkaException's str() is the repr of its KafkaError; its own str() is the words.
    err = exc.args[0] if isinstance(exc, ClientError) and exc.args else None
    words = err.str() if err is not None and hasattr(err, "str") else str(exc)
    return BrokerUnavailable(f"Kafka at {config.bootstrap_servers} unreachable: {words}",
                             code="_TRANSPORT")


def check_reachable(admin: AdminClient, config: KafkaConfig,
                    timeout: float = DEFAULT_TIMEOUT) -> None:
    """BrokerUnavailable unless a broker answers a metadata request within ``timeout``: some
    admin calls (listing groups) answer "nothing" rather than fail when none does."""
    try:
        md = admin.list_topics(timeout=timeout)
    except ClientError as exc:
        raise _unavailable(config, exc) from None
    if not md.brokers:
        raise _unavailable(config, RuntimeError("no broker in metadata"))


def partitions_of(admin: AdminClient, config: KafkaConfig, topic: str,
                  timeout: float = DEFAULT_TIMEOUT) -> list[int]:
    """Partition ids of ``topic``; TopicNotFound or BrokerUnavailable otherwise."""
    try:
        md = admin.list_topics(topic=topic, timeout=timeout)
    except ClientError as exc:
        raise _unavailable(config, exc) from None
    if not md.brokers:
        raise _unavailable(config, RuntimeError("no broker in metadata"))
    tmd = md.topics.get(topic)
    if tmd is None:
        raise TopicNotFound(topic)
    err = tmd.error
    if err is not None:
        if err.code() == _RdKafkaError.UNKNOWN_TOPIC_OR_PART:
            raise TopicNotFound(topic)
        raise KafkaError(f"topic {topic!r}: {err.str()}", code=err.name(), topic=topic)
    return sorted(tmd.partitions)


def topic_exists(admin: AdminClient, config: KafkaConfig, topic: str) -> bool:
    try:
        partitions_of(admin, config, topic)
    except TopicNotFound:
        return False
    return True


def _list_offsets(admin: AdminClient, config: KafkaConfig,
                  specs: dict[TopicPartition, OffsetSpec]) -> dict[tuple[str, int], int]:
    if not specs:
        return {}
    try:
        futures = admin.list_offsets(specs, request_timeout=DEFAULT_TIMEOUT)
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}
    except ClientError as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, _RdKafkaError) and err.code() in (
                _RdKafkaError._TRANSPORT, _RdKafkaError._TIMED_OUT):
            raise _unavailable(config, exc) from None
        raise KafkaError(f"list offsets failed: {exc}") from None


def watermarks(admin: AdminClient, config: KafkaConfig,
               partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], tuple[int, int]]:
    """``(low, high)`` per partition: the log start offset and the log end offset."""
    parts = list(partitions)
    earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    low = _list_offsets(admin, config, {TopicPartition(t, p): earliest for t, p in parts})
    high = _list_offsets(admin, config, {TopicPartition(t, p): latest for t, p in parts})
    return {tp: (low[tp], high[tp]) for tp in parts}


def offsets_for_time(admin: AdminClient, config: KafkaConfig,
                     partitions: Iterable[tuple[str, int]], timestamp_ms: int
                     ) -> dict[tuple[str, int], int | None]:
    """Earliest offset whose timestamp is >= ``timestamp_ms`` per partition; None when no
    record is that recent (Kafka's tools then use the log end offset)."""
    found = _list_offsets(admin, config, {TopicPartition(t, p): OffsetSpec.for_timestamp(
        timestamp_ms) for t, p in partitions})
    return {tp: (None if off < 0 else off) for tp, off in found.items()}


def committed(admin: AdminClient, group: str,
              timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, int], int]:
    """The committed offset of every partition the group has one for."""
    def list_offsets() -> object:
        req = [ConsumerGroupTopicPartitions(group)]
        return admin.list_consumer_group_offsets(req, request_timeout=timeout)[group].result()

    res = admin_call(f"committed offsets of {group!r}", list_offsets)
    out: dict[tuple[str, int], int] = {}
    for tp in getattr(res, "topic_partitions", None) or []:
        if tp.offset is not None and tp.offset >= 0:
            out[(tp.topic, tp.partition)] = tp.offset
    return out


def reader(config: KafkaConfig, **overrides: Any) -> Consumer:
    """A consumer for direct assignment: never commits, reports partition EOF."""
    conf: dict[str, Any] = {
        "group.id": SCAN_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        **overrides,
    }
    return _consumer(config, conf)


def scan(config: KafkaConfig, ranges: Iterable[Range], *, idle_timeout: float = 30.0,
         consumer: Consumer | None = None) -> Iterator[Message]:
    """Records of every range, in offset order within a partition (interleaved across
    partitions). Stops when each range is exhausted; gaps (compaction, transaction markers)
    are fine because a partition also ends at its EOF event or when its position passes the
    end. ``idle_timeout``: BrokerUnavailable after that long without progress."""
    todo = {(r.topic, r.partition): r for r in ranges if len(r) > 0}
    if not todo:
        return
    own = consumer is None
    c = consumer or reader(config)
    try:
        c.assign([TopicPartition(t, p, r.start) for (t, p), r in todo.items()])
        last_progress = time.monotonic()
        while todo:
            batch = c.consume(num_messages=500, timeout=0.5)
            if not batch:
                _drop_passed(c, todo)
                if time.monotonic() - last_progress > idle_timeout:
                    raise BrokerUnavailable(f"no progress reading {sorted(todo)} for "
                                            f"{idle_timeout:.0f}s", code="_TIMED_OUT")
                continue
            last_progress = time.monotonic()
            for msg in batch:
                key = (str(msg.topic()), int(msg.partition() or 0))
                r = todo.get(key)
                if r is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == _RdKafkaError._PARTITION_EOF:
                        _done(c, todo, key)
                        continue
                    if err.fatal() or err.code() == _RdKafkaError._TRANSPORT:
                        raise BrokerUnavailable(f"reading {key[0]}[{key[1]}]: {err.str()}",
                                                code=err.name())
                    raise KafkaError(f"reading {key[0]}[{key[1]}]: {err.str()}",
                                     code=err.name(), topic=key[0])
                offset = msg.offset()
                if offset is None or offset >= r.end:
                    _done(c, todo, key)
                    continue
                yield msg
                if offset >= r.end - 1:
                    _done(c, todo, key)
    finally:
        if own:
            c.close()


def _done(c: Consumer, todo: dict[tuple[str, int], Range], key: tuple[str, int]) -> None:
    if todo.pop(key, None) is not None:
        # Stop fetching it: the rest of the scan should not pay for records it will drop.
        c.incremental_unassign([TopicPartition(key[0], key[1])])


def _drop_passed(c: Consumer, todo: dict[tuple[str, int], Range]) -> None:
    positions = c.position([TopicPartition(t, p) for t, p in todo])
    for tp in positions:
        r = todo.get((tp.topic, tp.partition))
        if r is not None and tp.offset is not None and tp.offset >= r.end:
            _done(c, todo, (tp.topic, tp.partition))
