"""Watching the cluster during and after a scenario, with clients that survive broker deaths.

librdkafka 2.16.0's AdminClient has aborted the whole test process
(``rdkafka_queue.h: rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0``) in
``list_consumer_group_offsets`` while the coordinator's broker was SIGKILLed and in
``describe_consumer_groups`` on a fresh 3-node cluster. So: committed offsets and watermarks
come from one long-lived consumer that never subscribes (OffsetFetch only), and group
membership is asked in a child process that may crash.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._names import parse_wait_topic
from streamjobs._worker import wait_group
from tests.faults.checker import CommitSample, TopicRecord
from tests.faults.ledger import now_ms

__all__ = ["CommitSampler", "end_offsets", "group_members", "read_topics", "to_record"]

_DESCRIBE_GROUP = """
import json, sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
g = admin.describe_consumer_groups([sys.argv[2]], request_timeout=5)[sys.argv[2]].result(10)
print(json.dumps({"state": str(g.state), "coordinator": g.coordinator.id,
                  "members": [len(m.assignment.topic_partitions) for m in g.members]}))
"""


def describe_group(bootstrap: str, group: str) -> dict[str, Any] | None:
    """State, coordinator node id and partitions per member; None if the query failed."""
    # In a child process: librdkafka's AdminClient can abort the process when brokers die
    # under it (docs/faults.md), which must not take the test run with it.
    try:
        out = subprocess.run([sys.executable, "-c", _DESCRIBE_GROUP, bootstrap, group],
                             capture_output=True, text=True, timeout=30)
        g: dict[str, Any] | None = orjson.loads(out.stdout) if out.returncode == 0 else None
    except (subprocess.TimeoutExpired, orjson.JSONDecodeError):
        return None
    return g


def group_members(bootstrap: str, group: str) -> list[int] | None:
    """Partitions per member of a STABLE group; None if not stable or the query failed."""
    g = describe_group(bootstrap, group)
    if not g or not g["state"].endswith("STABLE"):
        return None
    members: list[int] = g["members"]
    return members


class CommitSampler(threading.Thread):
    """Samples the group's committed offsets every ``interval`` s; keeps each change (the
    first sample showing a new value, stamped after the answer arrived). Wait-tier topics are
    committed by the worker's wait group (``wait_group``), job topics by ``group``."""

    def __init__(self, config: KafkaConfig, group: str, topics: Callable[[], list[str]],
                 interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="commit-sampler")
        self.config = config
        self.group = group
        self.topics = topics
        self.interval = interval
        self.samples: list[CommitSample] = []
        self.latest: dict[tuple[str, int], int] = {}
        self.failures = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._waits: Any = None  # a client in the wait group (committed offsets only)
        self._tps: list[TopicPartition] = []

    def _client(self) -> Any:
        if self._consumer is None:
            c = self._new_client(self.group)
            md = c.list_topics(timeout=10)
            self._tps = [TopicPartition(t, p) for t in self.topics()
                         for p in md.topics[t].partitions]
            self._waits = self._new_client(wait_group(self.group))
            self._consumer = c
        return self._consumer

    def _new_client(self, group: str) -> Any:
        return Consumer({**self.config.client_settings(), "group.id": group,
                         "enable.auto.commit": False, "log_level": 2})

    def _committed(self) -> list[Any]:
        jobs = [tp for tp in self._tps if parse_wait_topic(tp.topic) is None]
        waits = [tp for tp in self._tps if parse_wait_topic(tp.topic) is not None]
        res: list[Any] = self._client().committed(jobs, timeout=5) if jobs else []
        if waits:
            res += self._waits.committed(waits, timeout=5)
        return res

    def sample(self) -> dict[tuple[str, int], int]:
        """One sample now (also recorded); {} when the broker did not answer."""
        with self._lock:
            try:
                res = self._committed()
            except Exception:
                self.failures += 1
                return {}
            t = now_ms()
            out = {(tp.topic, tp.partition): tp.offset for tp in res
                   if tp.offset >= 0 and tp.error is None}
            for tp, off in out.items():
                if self.latest.get(tp) != off:
                    self.latest[tp] = off
                    self.samples.append(CommitSample(t, tp[0], tp[1], off))
            return out

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """High watermarks of the sampled partitions (same long-lived client: creating and
        destroying clients while brokers die is where librdkafka has crashed on us)."""
        with self._lock:
            c = self._client()
            try:
                return self._watermarks(c)
            except KafkaException:
                # After a broker restart this client (which neither subscribes nor is assigned)
                # can keep stale metadata and answer "Unknown partition" for good: ask for the
                # topics' metadata again, then retry once.
                for topic in {tp.topic for tp in self._tps}:
                    c.list_topics(topic, timeout=10)
                return self._watermarks(c)

    def _watermarks(self, c: Any) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1]
                for tp in self._tps}

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(15)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._waits.close()
                self._consumer = self._waits = None


def end_offsets(config: KafkaConfig, topics: list[str]) -> dict[tuple[str, int], int]:
    c = Consumer({**config.client_settings(), "group.id": f"faults-ends-{uuid.uuid4().hex[:8]}",
                  "log_level": 2})
    try:
        md = c.list_topics(timeout=10)
        return {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in topics for p in md.topics[t].partitions}
    finally:
        c.close()


def read_topics(config: KafkaConfig, topics: list[str]) -> list[TopicRecord]:
    """Every record of ``topics`` (read to the end offsets seen at the start)."""
    ends = end_offsets(config, topics)
    wanted = {tp: end for tp, end in ends.items() if end > 0}
    if not wanted:
        return []
    c = Consumer({**config.client_settings(), "group.id": f"faults-reader-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "enable.partition.eof": False})
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in wanted])
    out: list[TopicRecord] = []
    remaining = dict(wanted)
    deadline = time.monotonic() + 120
    try:
        while remaining and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is not None:
                    continue
                out.append(to_record(m))
                tp = (m.topic(), m.partition())
                if tp in remaining and (m.offset() or 0) + 1 >= remaining[tp]:
                    del remaining[tp]
    finally:
        c.close()
    if remaining:
        raise RuntimeError(f"could not read back {sorted(remaining)[:3]}...")
    return out


def to_record(m: Any) -> TopicRecord:
    hdrs = m.headers() or []
    orig_topic = h.get(hdrs, h.ORIG_TOPIC)
    orig_p, orig_o = h.get_int(hdrs, h.ORIG_PARTITION), h.get_int(hdrs, h.ORIG_OFFSET)
    orig = ((orig_topic, orig_p, orig_o) if orig_topic is not None and orig_p is not None
            and orig_o is not None else None)
    meta = h.JobMeta.from_headers(hdrs)
    return TopicRecord(m.topic(), m.partition(), m.offset(), float(m.timestamp()[1]),
                       meta.job_id, h.get_int(hdrs, h.ATTEMPT) or (1 if meta.compact else None),
                       h.get_int(hdrs, h.DUE_AT), orig, h.get(hdrs, h.DLQ_REASON))
