"""One assigned partition: its offsets, its pause state, and pausing/resuming it.

``Part`` is a new object per assignment, so late completions for an earlier assignment are
recognised by ``gone``. ``Pauses`` decides which partitions should be paused (the in-flight
bound, a wait tier holding records not due yet) and pauses/resumes them through their consumer.

Pausing is lossless only with a seek: librdkafka drops the pre-fetched records of a paused
partition and resumes after the last record it handed us, but the loop may have handed some
back (not taken). So every pause seeks to the partition's first record not taken.

That makes a pause costly: every partition's pre-fetched records are fetched (and
decompressed) again after the resume. So at the in-flight bound the loop first only stops
taking records (``holding``: librdkafka keeps its pre-fetched ones) and pauses only if the
bound still holds after ``SOFT_HOLD_S``; a pause stays needed then, because the consumer must
be polled (rebalances, ``max.poll.interval.ms``) without handing out records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from .._connection import ClientError, TopicPartition
from .offsets import PartitionTracker
from .routes import Routes

if TYPE_CHECKING:
    from .._unique import SeenSet
    from .inline import Pace

__all__ = ["SOFT_HOLD_S", "Part", "Pauses", "by_consumer"]

SOFT_HOLD_S = 0.5  # at the in-flight bound: seconds of taking nothing before pausing


class Part:
    """State of one assigned partition (a new object per assignment, so late completions for
    an earlier assignment are recognised by ``gone``)."""

    __slots__ = ("acks", "consumer", "dedupe", "gone", "hold_until_ms", "is_async", "job_topic",
                 "next_fetch", "pace", "partition", "paused", "paused_kafka", "revoked", "route",
                 "single_type", "status_every", "stored", "tasks", "topic", "tracker", "wait")

    def __init__(self, topic: str, partition: int, routes: Routes, ordering: str,
                 consumer: Any = None) -> None:
        self.topic = topic
        self.partition = partition
        self.consumer = consumer  # the one of the worker's two consumers that owns it
        self.tracker = PartitionTracker()
        self.dedupe: SeenSet | None = None  # unique jobs / schedule ticks (uniqueness.py)
        self.wait = routes.wait.get(topic)  # (job topic, tier) for a wait topic
        self.job_topic = routes.job_topic_of(topic)
        self.is_async = routes.all_async(self.job_topic)
        routes_here = routes.job_topics.get(self.job_topic, ())
        self.single_type = routes_here[0].job.name if len(routes_here) == 1 else None
        # The route of every record of a job topic of one type (the topic's type wins over a
        # header naming another); None on a wait topic, whose records name their type.
        self.route = routes_here[0] if self.single_type and self.wait is None else None
        self.pace: Pace | None = None  # its job type may run inline (inline.py; the worker's)
        # Every job type here records every transition (no per-job check of the setting).
        self.status_every = all(r.job.status == "all" for r in routes_here)
        self.next_fetch = -1  # first offset not taken yet (-1: nothing received)
        self.stored = -1
        self.tasks = 0  # executor tasks running for this partition
        self.acks = 0  # retry/DLQ records awaiting acknowledgement
        self.hold_until_ms = 0.0
        self.paused = False  # drop incoming records (pause requested or in effect)
        self.paused_kafka = False
        self.revoked = False
        self.gone = False

    def hold(self, until_ms: float) -> None:
        """Pause until ``until_ms`` (a waiting record is not due within the horizon)."""
        self.hold_until_ms = until_ms
        self.paused = True  # drop the rest of this batch for it; seek back happens on pause


def by_consumer(parts: Iterable[Part]) -> dict[Any, list[Any]]:
    """Partitions of ``parts`` grouped by the consumer that owns them."""
    out: dict[Any, list[Any]] = {}
    for part in parts:
        out.setdefault(part.consumer, []).append(TopicPartition(part.topic, part.partition))
    return out



class Pauses:
    """Which partitions should be paused; pausing and resuming them through their consumer."""

    def __init__(self) -> None:
        self.for_in_flight = False  # paused because the in-flight bound was reached
        self.full_since = 0.0  # ms: when the bound was reached, taking nothing since (0: not)
        self.dirty = False  # something changed: reconcile() must look at every partition
        # Intake handed records back at the bound: they were delivered to us, so librdkafka's
        # position is past them and only the pause's seek brings them back. A drop below
        # resume_at before reconcile() runs must not cancel that pause (the records would be
        # skipped).
        self.unapplied = False
        self.count = 0  # partitions paused so far (tests and debugging)

    @property
    def holding(self) -> bool:
        """At the in-flight bound: the loop takes no record (paused or not yet)."""
        return self.for_in_flight or self.full_since > 0.0

    def request(self) -> None:
        """The in-flight bound was reached while taking a batch."""
        self.for_in_flight = True
        self.dirty = True
        self.unapplied = True

    def hold(self, part: Part, until_ms: float) -> None:
        """Pause ``part`` until ``until_ms`` (a waiting record is not due within the horizon)."""
        part.hold(until_ms)
        self.dirty = True

    def reconcile(self, parts: Collection[Part], *, in_flight: int, max_in_flight: int,
                  resume_at: int, stopping: bool, now_ms: float) -> None:
        """Pause what should be paused and resume the rest (cheap when nothing changed)."""
        if self.holding and in_flight <= resume_at and not self.unapplied:
            self.full_since = 0.0
            if self.for_in_flight:
                self.for_in_flight = False
                self.dirty = True
        elif not self.for_in_flight:
            if in_flight >= max_in_flight and not self.full_since:
                self.full_since = now_ms
            if self.full_since and now_ms - self.full_since >= SOFT_HOLD_S * 1000.0:
                self.request()  # still holding: poll the consumer paused from now on
        if not self.dirty and not any(0 < p.hold_until_ms <= now_ms for p in parts):
            return
        self.dirty = False
        pause, resume = [], []
        for part in parts:
            if 0 < part.hold_until_ms <= now_ms:
                part.hold_until_ms = 0.0
            should = stopping or self.for_in_flight or part.hold_until_ms > now_ms
            if should and not part.paused_kafka:
                pause.append(part)
            elif not should and (part.paused_kafka or part.paused):
                # paused but never paused in Kafka: a hold that ran out before this pass. Its
                # records were dropped after delivery, so it too needs the resume's seek.
                resume.append(part)
        if pause:
            self.pause(pause)
        self.unapplied = False
        if resume:
            for part in resume:
                part.paused = part.paused_kafka = False
            for consumer, tps in by_consumer(resume).items():
                _safe(consumer.resume, tps)
            for part in resume:
                # A seek wakes librdkafka's fetcher: without one, a consumer whose partitions
                # were all paused fetches again only at its next 1 s tick.
                if part.next_fetch >= 0:
                    _safe(part.consumer.seek,
                          TopicPartition(part.topic, part.partition, part.next_fetch))

    def pause(self, parts: list[Part]) -> None:
        for consumer, tps in by_consumer(parts).items():
            _safe(consumer.pause, tps)
        self.count += len(parts)
        for part in parts:
            part.paused = part.paused_kafka = True
            if part.next_fetch >= 0:
                _safe(part.consumer.seek,
                      TopicPartition(part.topic, part.partition, part.next_fetch))


def _safe(fn: Callable[[Any], Any], arg: Any) -> None:
    # ClientError: the partition was revoked meanwhile; its new owner starts from the
    # committed offset.
    with contextlib.suppress(ClientError):
        fn(arg)
