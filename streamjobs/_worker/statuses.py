"""The worker's status records (poll thread only): what a job did, in the status topic.

Which types write what is the catalogue's ``status`` setting (docs/status.md):

- ``succeeded`` (``all`` types): after the handler returned, for the successes of a finished
  chunk, one record per job type and status partition listing its jobs (a job alone there gets
  its own record), fire-and-forget through a producer of their own (no delivery report unless one
  failed): a commit never waits for them, the poll loop never blocks on them (a
  full local queue keeps them for the next loop turn);
- ``started`` (``all`` types): only for a job still running ``STARTED_AFTER`` seconds after the
  sampler first saw it (compaction keeps a job's last record only, so a fast job needs none);
- ``retrying`` / ``dead`` (``all`` and ``failures`` types): built with the retry or dead-letter
  record and acknowledged together with it before the failed record's offset counts as
  finished; once the dead-letter record is acknowledged, ``dead`` once more with its partition
  and offset (fire-and-forget).

A job's records go to the one status partition of its id. The fire-and-forget ones share a
producer, so they keep their order; a ``succeeded`` that follows a ``retrying`` comes from a run
that only started once the retry record, and the ``retrying`` with it, were acknowledged.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import itemgetter, mod
from typing import Any

import orjson

from .._connection import ClientError
from .._connection import Producer as KafkaProducer
from .._delivery import PRODUCER_SETTINGS
from .._names import status_topic
from .._status.record import BATCH_PREFIX, Transition, encode
from .context import JobContext, idents
from .outbox import Outbox
from .routes import Route

__all__ = ["STARTED_AFTER", "StatusRecorder"]

_log = logging.getLogger("streamjobs.worker")
STARTED_AFTER = 1.0  # seconds a job runs before a ``started`` record is worth writing
SAMPLE_EVERY = 0.5
_PLAIN = re.compile(rb'[^"\\\x00-\x1f\x7f-\xff]*')  # a job id needing no JSON escape
_ID = itemgetter(0)


class StatusRecorder:
    def __init__(self, outbox: Outbox, topic: str, partitions: int, host: str,
                 settings: dict[str, Any] | None,
                 make: Callable[[dict[str, Any]], Any] = KafkaProducer) -> None:
        self.outbox = outbox
        self.topic = topic
        self.partitions = partitions
        self.host = host
        # Successes get a producer of their own (error reports only); with no job type
        # recording them, the few fire-and-forget records (a dead letter's place) use the
        # outbox's client, and no idle client's threads compete with the handlers.
        self.own = settings is not None
        self.producer: Any
        if settings is None:
            self.producer = outbox.producer
        else:
            self.producer = make({
                **PRODUCER_SETTINGS, "linger.ms": 50, "compression.type": "none",
                "queue.buffering.max.messages": 500_000,
                "delivery.report.only.error": True, "on_delivery": _on_error, **settings})
        self._loose: list[tuple[int, bytes, bytes]] = []  # refused by a full local queue
        # Keys of batch records: unique per worker process and record (never compacted).
        self._batch_key = f"{BATCH_PREFIX}{host}/{os.getpid()}/{os.urandom(4).hex()}/".encode()
        self._seq = itertools.count()
        self._heads: dict[tuple[Route, str, int], bytes] = {}
        # id(ctx) -> (ctx, first seen (monotonic), first seen (ms), started written)
        self._seen: dict[int, tuple[JobContext, float, int, bool]] = {}

    @classmethod
    def connect(cls, outbox: Outbox, prefix: str, meta: Any, host: str,
                settings: dict[str, Any] | None,
                make: Callable[[dict[str, Any]], Any] = KafkaProducer) -> StatusRecorder | None:
        """A recorder for the status topic of ``prefix`` (``meta``: cluster metadata); None
        and a warning when the topic does not exist: jobs still run, unrecorded."""
        topic = status_topic(prefix)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            _log.warning("status topic %s does not exist (create it with `streamjobs topics "
                         "apply`); job status is not recorded", topic)
            return None
        return cls(outbox, topic, len(tmeta.partitions), host, settings, make)

    def partition(self, id_b: bytes) -> int:
        return zlib.crc32(id_b) % self.partitions

    # -- successes ----------------------------------------------------------------------------

    def succeeded(self, part: Any, jobs: list[JobContext]) -> None:
        """``succeeded`` for the jobs of ``all`` types among ``jobs`` (one partition's): one
        record per job type and status partition (``record.BATCH_PREFIX``), or the job's own
        record when it is alone there. Per job: its (id, attempt, offset) in one call, a CRC
        and a list append; the rest per group, in C-level passes."""
        n = self.partitions
        groups: dict[tuple[Any, int], list[tuple[bytes, int, int]]] = {}
        route = part.route
        if route is not None:  # a job topic of one type: every job is of that type
            if part.status_every or route.job.status == "all":
                listed = idents(jobs, route)
                lists: list[list[tuple[bytes, int, int]]] = [[] for _ in range(n)]
                adds = [group.append for group in lists]
                where = map(mod, map(zlib.crc32, map(_ID, listed)), repeat(n))
                for ident, p in zip(listed, where):  # noqa: B905 (where: one per ident)
                    adds[p](ident)
                groups = {(route, p): group for p, group in enumerate(lists) if group}
        else:
            self._group(part, jobs, groups)
        at = int(time.time() * 1000)
        for (route, partition), group in groups.items():
            head = self._heads.get((route, part.topic, part.partition)) or self._head(
                (route, part.topic, part.partition))
            if len(group) > 1 and _PLAIN.fullmatch(b"".join(map(_ID, group))) is None:
                # Some id is not JSON text as it is: those get records of their own.
                single = [t for t in group if _PLAIN.fullmatch(t[0]) is None]
                group = [t for t in group if _PLAIN.fullmatch(t[0]) is not None]
                for job_id, attempt, offset in single:
                    self._post(partition, job_id, b'%s,"at":%d,"attempt":%d,"offset":%d}'
                               % (head, at, attempt, offset))
            if len(group) == 1:
                job_id, attempt, offset = group[0]
                self._post(partition, job_id, b'%s,"at":%d,"attempt":%d,"offset":%d}'
                           % (head, at, attempt, offset))
            elif group:
                ids, attempts, offsets = zip(*group, strict=True)
                self._post(partition, b"%s%d/%d" % (self._batch_key, at, next(self._seq)),
                           b'%s,"at":%d,"ids":["%s"],"attempts":%s,"offsets":%s}'
                           % (head, at, b'","'.join(ids), orjson.dumps(attempts),
                              orjson.dumps(offsets)))

    def _group(self, part: Any, jobs: list[JobContext],
               groups: dict[tuple[Any, int], list[tuple[bytes, int, int]]]) -> None:
        """``succeeded``'s grouping for a topic of several job types."""
        crc = zlib.crc32
        n = self.partitions
        every = part.status_every
        last: Any = None
        for ctx in jobs:
            route = ctx._route  # type: ignore[attr-defined]
            if route is not last:
                if not every and route.job.status != "all":
                    continue
                last = route
            ident = ctx._ident()  # type: ignore[attr-defined]
            key = (route, crc(ident[0]) % n)
            group = groups.get(key)
            if group is None:
                groups[key] = [ident]
            else:
                group.append(ident)

    def _post(self, partition: int, key: bytes, value: bytes) -> None:
        if self._loose:
            self._loose.append((partition, key, value))
            return
        try:
            self.producer.produce(self.topic, value, key, partition=partition)
        except BufferError:  # never wait here: the next loop turns send it
            self._loose.append((partition, key, value))
        except ClientError as exc:
            _log.warning("status record not written: %s", exc)

    def _head(self, key: tuple[Route, str, int]) -> bytes:
        route, topic, partition = key
        head = self._heads[key] = orjson.dumps({
            "state": "succeeded", "type": route.job.name, "worker": self.host,
            "topic": topic, "partition": partition})[:-1]
        return head

    # -- long runs ----------------------------------------------------------------------------

    def sample(self, running: Iterable[JobContext | None]) -> None:
        """``started`` for ``all`` jobs seen running for ``STARTED_AFTER`` seconds or more,
        dated when first seen running."""
        now = time.monotonic()
        old = self._seen
        seen: dict[int, tuple[JobContext, float, int, bool]] = {}
        for ctx in running:
            if ctx is None or ctx._route.job.status != "all":  # type: ignore[attr-defined]
                continue
            prev = old.get(id(ctx))
            if prev is not None and prev[0] is ctx:
                _, first, first_ms, written = prev
            else:
                first, first_ms, written = now, int(time.time() * 1000), False
            if not written and now - first >= STARTED_AFTER:
                self.write(ctx.job_id, ctx.job_type, Transition(
                    "started", first_ms, ctx.attempt, self.host,
                    topic=ctx.topic, partition=ctx.partition, offset=ctx.offset))
                written = True
            seen[id(ctx)] = (ctx, first, first_ms, written)
        self._seen = seen

    # -- any transition -----------------------------------------------------------------------

    def record(self, job_id: str, job_type: str, t: Transition) -> tuple[int, bytes, bytes]:
        """(partition, key, value) of a status record."""
        key = job_id.encode("utf-8")
        return self.partition(key), key, encode(job_type, t)

    def write(self, job_id: str, job_type: str, t: Transition) -> None:
        """Fire-and-forget."""
        self._loose.append(self.record(job_id, job_type, t))
        self._send_loose()

    def _send_loose(self) -> None:
        loose, self._loose = self._loose, []
        for i, (partition, key, value) in enumerate(loose):
            try:
                self.producer.produce(self.topic, value, key, partition=partition)
            except BufferError:
                self._loose = loose[i:] + self._loose
                return
            except ClientError as exc:
                _log.warning("status record of job %s not written: %s", key.decode(), exc)

    def poll(self) -> None:
        """Serve the producer (error reports only) and send what a full queue held back."""
        if self.own:
            self.producer.poll(0)
        if self._loose:
            self._send_loose()

    def flush(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._loose and time.monotonic() < deadline:
            self.producer.poll(0.05)
            self._send_loose()
        self.producer.flush(max(0.0, deadline - time.monotonic()))


def _on_error(err: Any, msg: Any) -> None:
    if err is not None:  # delivery.report.only.error: only failures come here
        _log.warning("status record not delivered to %s: %s", msg.topic(), err)
