"""Pausing partitions: for the in-flight bound, and to hold a wait tier until its records fall due.

Pausing is lossless only with a seek: librdkafka drops the pre-fetched records of a paused
partition and resumes after the last record it handed us, but the loop may have handed some
back (not taken). So every pause seeks to the partition's first record not taken.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection
from typing import Any

from ..connection import ClientError, TopicPartition
from .backlog import by_consumer
from .intake import Part

__all__ = ["Pauses"]


class Pauses:
    """Which partitions should be paused; pausing and resuming them through their consumer."""

    def __init__(self) -> None:
        self.for_in_flight = False  # paused because the in-flight bound was reached
        self.dirty = False  # something changed: reconcile() must look at every partition
        self.count = 0  # partitions paused so far (tests and debugging)

    def request(self) -> None:
        """The in-flight bound was reached while taking a batch."""
        self.for_in_flight = True
        self.dirty = True

    def hold(self, part: Part, until_ms: float) -> None:
        """Pause ``part`` until ``until_ms`` (a waiting record is not due within the horizon)."""
        part.hold_until_ms = until_ms
        part.paused = True  # drop the rest of this batch for it; seek back happens on pause
        self.dirty = True

    def reconcile(self, parts: Collection[Part], *, in_flight: int, max_in_flight: int,
                  resume_at: int, stopping: bool, now_ms: float) -> None:
        """Pause what should be paused and resume the rest (cheap when nothing changed)."""
        if in_flight >= max_in_flight and not self.for_in_flight:
            self.request()
        elif self.for_in_flight and in_flight <= resume_at:
            self.for_in_flight = False
            self.dirty = True
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
            elif not should and part.paused_kafka:
                resume.append(part)
        if pause:
            self.pause(pause)
        if resume:
            for part in resume:
                part.paused = part.paused_kafka = False
            for consumer, tps in by_consumer(resume).items():
                _safe(consumer.resume, tps)

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
