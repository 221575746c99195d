"""Reading one job's status from Kafka: only the partition its id hashes to.

A job id made by ``emit`` is a UUIDv7: its first 48 bits are the creation time. The status
topic uses ``LogAppendTime``, so every record of the job has a timestamp at or after its
creation (less the clock skew allowed by ``SKEW_MS``): the read starts at the offset Kafka
gives for that time, not at the partition's beginning. Other ids read the partition whole.

``Follower`` keeps reading as records arrive (``streamjobs status --watch``, ``watch``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._config import KafkaConfig
from .._connection import Consumer, TopicPartition
from .._connection import RdKafkaError as _RdKafkaError
from .._connection import admin as admin_client
from .._scan import offsets_for_time, partitions_of, reader, watermarks
from ..errors import BrokerUnavailable, KafkaError, TopicNotFound
from .record import BATCH_PREFIX, decode, decode_all, partition_for, record_keys
from .timeline import JobStatus, fold

_BATCH = BATCH_PREFIX.encode()

__all__ = ["SKEW_MS", "Follower", "created_ms", "lookup", "watch"]

# How far a writer's or broker's clock may be behind the emitter's without a lookup missing
# records: the read starts this long before the job id's creation time.
SKEW_MS = 10 * 60_000


def created_ms(job_id: str) -> int | None:
    """Creation time of a UUIDv7 job id (ms), None for other ids."""
    if len(job_id) != 36 or job_id[14] != "7" or job_id[8] != "-":
        return None
    try:
        return int(job_id[:8] + job_id[9:13], 16)
    except ValueError:
        return None


class Follower:
    """Reads the status records of one job from its partition, from its creation on.

    ``poll`` returns the job's status when a record changed it; ``caught_up`` turns true once
    the read reached the partition's end as it was when the follower opened. Not thread safe:
    one thread (or one ``asyncio.to_thread`` at a time) uses it."""

    def __init__(self, config: KafkaConfig, job_id: str, *, topic: str,
                 timeout: float = 10.0) -> None:
        self.job_id = job_id
        self.topic = topic
        self.status: JobStatus | None = None
        self._keys = record_keys(job_id)
        self._quoted = b'"%s"' % job_id.encode("utf-8")
        admin = admin_client(config)
        parts = partitions_of(admin, config, topic, timeout)
        self.partition = partition_for(job_id, len(parts))
        start, self.end = _offsets(admin, config, (topic, self.partition), job_id, timeout)
        self.position = start
        self.caught_up = start >= self.end
        self._consumer: Consumer = reader(config, **{"fetch.wait.max.ms": 100})
        self._consumer.assign([TopicPartition(topic, self.partition, start)])

    def poll(self, timeout: float) -> JobStatus | None:
        """Read what arrived within ``timeout`` seconds; the status if it changed."""
        changed = False
        msgs = self._consumer.consume(num_messages=500, timeout=timeout)
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == _RdKafkaError._PARTITION_EOF:
                    self.caught_up = True
                    continue
                if err.fatal() or err.code() == _RdKafkaError._TRANSPORT:
                    raise BrokerUnavailable(f"reading {self.topic}[{self.partition}]: "
                                            f"{err.str()}", code=err.name())
                raise KafkaError(f"reading {self.topic}[{self.partition}]: {err.str()}",
                                 code=err.name(), topic=self.topic)
            offset = msg.offset() or 0
            self.position = offset + 1
            if self.position >= self.end:
                self.caught_up = True
            key = msg.key()
            if key in self._keys:
                got = decode(msg.value())
                if got is not None:
                    self.status = fold(self.status, self.job_id, got[0], got[1])
                    changed = True
            elif (key is not None and key.startswith(_BATCH)
                  and self._quoted in (value := msg.value() or b"")):
                for job_id, job_type, t in decode_all(key, value):
                    if job_id == self.job_id:
                        self.status = fold(self.status, job_id, job_type, t)
                        changed = True
        return self.status if changed else None

    def read_to_end(self, timeout: float) -> JobStatus | None:
        """Read up to the end seen at open; BrokerUnavailable after ``timeout`` without
        progress."""
        last, progress_at = self.position, time.monotonic()
        while not self.caught_up:
            self.poll(0.2)
            if self.position != last:
                last, progress_at = self.position, time.monotonic()
            elif time.monotonic() - progress_at > timeout:
                raise BrokerUnavailable(f"no progress reading {self.topic}[{self.partition}] "
                                        f"for {timeout:g}s", code="_TIMED_OUT")
        return self.status

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _offsets(admin: Any, config: KafkaConfig, tp: tuple[str, int], job_id: str,
             timeout: float) -> tuple[int, int]:
    """(first offset to read, end offset now). A partition whose leader is moving (a topic
    just created, a broker restarting) is asked again until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, end = watermarks(admin, config, [tp])[tp]
            created = created_ms(job_id)
            if created is None:
                return low, end
            found = offsets_for_time(admin, config, [tp], created - SKEW_MS)[tp]
            return (end if found is None else max(low, found)), end
        except (TopicNotFound, BrokerUnavailable):
            raise
        except KafkaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def lookup(config: KafkaConfig, job_id: str, *, topic: str,
           timeout: float = 10.0) -> JobStatus | None:
    """The status of ``job_id`` (None when the topic holds nothing about it), read from the
    one partition the id hashes to. Raises TopicNotFound / BrokerUnavailable."""
    with Follower(config, job_id, topic=topic, timeout=timeout) as f:
        return f.read_to_end(timeout)


async def watch(config: KafkaConfig, job_id: str, *, topic: str,
                timeout: float | None = None) -> JobStatus:
    """Await ``job_id`` reaching a final state (succeeded or dead) and return its status.
    Raises ``TimeoutError`` after ``timeout`` seconds (None: wait for ever). The blocking
    reads run in a worker thread, never on the event loop. Job types recording ``failures``
    only never show ``succeeded``: watch those with a timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    f = await asyncio.to_thread(Follower, config, job_id, topic=topic)
    try:
        while True:
            if f.status is not None and f.status.final:
                return f.status
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                last = f.status.state if f.status else "unknown"
                raise TimeoutError(f"job {job_id} did not reach a final state within "
                                   f"{timeout:g}s (last: {last})")
            await asyncio.to_thread(f.poll, 0.5 if left is None else min(0.5, left))
    finally:
        await asyncio.to_thread(f.close)
