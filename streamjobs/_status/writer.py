"""``StatusWriter``: status records through a client that is not the worker's (emit, dlq
reprocess, replay range). The status topic's partition count is read once, when opened."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from .._connection import until_queued
from .._names import status_topic
from .record import EMITTED_SUFFIX, Transition, encode, record_key

__all__ = ["StatusWriter"]

_log = logging.getLogger("streamjobs.status")


class StatusWriter:
    def __init__(self, client: Any, topic: str, partitions: int) -> None:
        self.client = client
        self.topic = topic
        self.partitions = partitions

    @classmethod
    def open(cls, client: Any, prefix: str, timeout: float = 10.0) -> StatusWriter | None:
        """A writer for the status topic of ``prefix`` through ``client`` (a confluent-kafka
        producer); None, with a warning, when the topic does not exist."""
        topic = status_topic(prefix)
        meta = client.list_topics(topic, timeout=timeout)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            _log.warning("status topic %s does not exist (create it with `streamjobs topics "
                         "apply`); job status is not recorded", topic)
            return None
        return cls(client, topic, len(tmeta.partitions))

    def record(self, job_id: str, job_type: str, t: Transition) -> tuple[int, bytes, bytes]:
        """(partition, key, value): the partition comes from the id, whatever the key."""
        partition = zlib.crc32(job_id.encode("utf-8")) % self.partitions
        return partition, record_key(job_id, t.state), encode(job_type, t)

    def write(self, job_id: str, job_type: str, t: Transition,
              on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Produce one record (BufferError, KafkaException: the caller's)."""
        partition, key, value = self.record(job_id, job_type, t)
        if on_delivery is None:
            self.client.produce(self.topic, value, key, partition=partition)
        else:
            self.client.produce(self.topic, value, key, partition=partition,
                                on_delivery=on_delivery)

    def send(self, job_id: str, job_type: str, t: Transition) -> None:
        """``write``, waiting (polling the client) while its local queue is full: for the
        command-line tools, which have no loop of their own to come back to."""
        until_queued(self.client, lambda: self.write(job_id, job_type, t), step=0.1)

    def emitted_head(self, job_type: str, topic: str) -> bytes:
        """The start of an ``emitted`` value, for ``emitted_value`` (emit's hot path)."""
        return orjson.dumps({"state": "emitted", "type": job_type, "topic": topic})[:-1]

    def emitted(self, head: bytes, job_id: str, at_ms: int) -> None:
        self.client.produce(self.topic, b'%s,"at":%d}' % (head, at_ms),
                            (job_id + EMITTED_SUFFIX).encode("utf-8"),
                            partition=zlib.crc32(job_id.encode("utf-8")) % self.partitions)
