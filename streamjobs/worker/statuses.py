"""The worker's status records (poll thread only): what a job did, in the status topic.

Which types write what is the catalogue's ``status`` setting (docs/status.md):

- ``succeeded`` (``all`` types): after the handler returned, for the successes of a finished
  chunk, fire-and-forget: a commit never waits for them, the poll loop never blocks on them
  (a full local queue defers them to the next loop turn);
- ``started`` (``all`` types): only for a job still running ``STARTED_AFTER`` seconds after the
  sampler first saw it (compaction keeps a job's last record only, so a fast job needs none);
- ``retrying`` / ``dead`` (``all`` and ``failures`` types): built with the retry or dead-letter
  record and acknowledged together with it before the failed record's offset counts as
  finished; once the dead-letter record is acknowledged, ``dead`` once more with its partition
  and offset (fire-and-forget).

All of a job's records go through this one producer to the one status partition of its id, so
they reach the topic in the order they were written.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Iterable
from typing import Any

import orjson

from .. import headers as h
from ..status.record import Transition, encode, status_topic
from .context import JobContext
from .outbox import Outbox
from .routes import Route

__all__ = ["STARTED_AFTER", "StatusRecorder"]

_log = logging.getLogger("streamjobs.worker")
STARTED_AFTER = 1.0  # seconds a job runs before a ``started`` record is worth writing
SAMPLE_EVERY = 0.5
_ID = h.JOB_ID


class StatusRecorder:
    def __init__(self, outbox: Outbox, topic: str, partitions: int, host: str) -> None:
        self.outbox = outbox
        self.topic = topic
        self.partitions = partitions
        self.host = host
        self._heads: dict[tuple[Route, str, int], bytes] = {}
        # id(ctx) -> (ctx, first seen (monotonic), first seen (ms), started written)
        self._seen: dict[int, tuple[JobContext, float, int, bool]] = {}

    @classmethod
    def connect(cls, outbox: Outbox, prefix: str, meta: Any, host: str) -> StatusRecorder | None:
        """A recorder for the status topic of ``prefix`` (``meta``: cluster metadata); None
        and a warning when the topic does not exist: jobs still run, unrecorded."""
        topic = status_topic(prefix)
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            _log.warning("status topic %s does not exist (create it with `streamjobs topics "
                         "apply`); job status is not recorded", topic)
            return None
        return cls(outbox, topic, len(tmeta.partitions), host)

    def partition(self, id_b: bytes) -> int:
        return zlib.crc32(id_b) % self.partitions

    # -- successes ----------------------------------------------------------------------------

    def succeeded(self, part: Any, jobs: list[JobContext]) -> None:
        """``succeeded`` for the jobs of ``all`` types among ``jobs`` (one partition's)."""
        at = int(time.time() * 1000)
        heads = self._heads
        post = self.outbox.post
        topic, n = self.topic, self.partitions
        every = part.status_every
        last: Any = None
        head = b""
        for ctx in jobs:
            route = ctx._route  # type: ignore[attr-defined]
            if route is not last:
                if not every and route.job.status != "all":
                    continue
                last = route
                key = (route, part.topic, part.partition)
                head = heads.get(key) or self._head(key)
            id_b = _id_bytes(ctx)
            post(topic, zlib.crc32(id_b) % n, id_b,
                 b'%s,"at":%d,"attempt":%d,"offset":%d}' % (head, at, ctx.attempt, ctx.offset))

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
        partition, key, value = self.record(job_id, job_type, t)
        self.outbox.post(self.topic, partition, key, value)


def _id_bytes(ctx: JobContext) -> bytes:
    msg = getattr(ctx, "_msg", None)
    if msg is not None:
        found: bytes | None = None
        for k, v in msg.headers() or ():
            if k == _ID:
                found = v
        if found is not None:
            return found
    return ctx.job_id.encode("utf-8")
