"""Where the assigned partitions stand against the log end: lag samples for the metrics, and
burst mode's "read to the end" check. Both read librdkafka's cached watermarks where it has them
(no request per partition per call)."""

from __future__ import annotations

from collections.abc import Iterable

from .._connection import ClientError, TopicPartition
from ..events import EventBus, LagSampled
from .partition import Part, by_consumer

__all__ = ["read_to_end", "sample_lag"]


def sample_lag(parts: Iterable[Part], bus: EventBus) -> None:
    """One ``LagSampled`` per partition: log end minus the commit position."""
    for part in list(parts):
        try:
            _lo, hi = part.consumer.get_watermark_offsets(
                TopicPartition(part.topic, part.partition), cached=True)
        except ClientError:
            continue
        pos = part.tracker.commit_position()
        if pos is None or hi < 0:
            continue
        bus.emit(LagSampled(part.topic, part.partition, max(0, hi - pos)))


def read_to_end(parts: Iterable[Part], now_ms: float) -> bool:
    """Every partition was read to its end (wait tiers holding records not due yet do not
    count: a later run picks them up). False when a broker cannot say."""
    positions: dict[Part, int] = {}
    unknown: list[Part] = []
    for part in parts:
        if part.wait is not None and part.hold_until_ms > now_ms:
            continue
        if part.next_fetch >= 0:
            positions[part] = part.next_fetch
        else:
            unknown.append(part)
    try:
        # Nothing received: where would the group start? (one request per consumer)
        unknown_at = {(p.topic, p.partition): p for p in unknown}
        for consumer, tps in by_consumer(unknown).items():
            for tp in consumer.committed(tps, timeout=5):
                positions[unknown_at[(tp.topic, tp.partition)]] = tp.offset
        for part, pos in positions.items():
            tp = TopicPartition(part.topic, part.partition)
            lo, hi = part.consumer.get_watermark_offsets(tp, cached=True)
            if hi < 0:
                lo, hi = part.consumer.get_watermark_offsets(tp, timeout=5)
            if (pos if pos >= 0 else lo) < hi and not _past_markers(part, hi):
                return False
    except ClientError:
        return False
    return True


def _past_markers(part: Part, hi: int) -> bool:
    """A job topic written by a transaction (``dlq reprocess``) ends with a commit marker the
    application never receives: the last record's offset + 1 stays below the log end.
    librdkafka's position moves past such markers (and past aborted records), so it says the
    partition was read to the end. Only for unpaused job topics: a pause seeks back, and a
    wait tier may hold a record it received."""
    if part.wait is not None or part.paused:
        return False
    [tp] = part.consumer.position([TopicPartition(part.topic, part.partition)])
    return bool(tp.offset >= hi)
