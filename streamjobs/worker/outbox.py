"""The worker's producer: retry, re-wait and dead-letter records (and the status records
acknowledged with them).

Idempotent, ``acks=all``. A failed record's offset is finished only when the broker
acknowledges the record that carries it on; the delivery callback runs on the poll thread
(which is the only caller of ``poll``), so it touches worker state without locks. A record
the broker refused is sent again after a pause, and one reported delivered without an offset
(librdkafka's implicit ack, see ``_delivery.unconfirmed``) at once: the partition's watermark
waits for it rather than losing the job.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .. import headers as h
from .._delivery import PRODUCER_SETTINGS, unconfirmed
from ..connection import ClientError
from ..connection import Producer as KafkaProducer

__all__ = ["Outbox", "Outgoing"]

_log = logging.getLogger("streamjobs.worker")
RESEND_AFTER = 5.0


@dataclass(slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: h.Headers
    on_ack: Callable[[], None]
    partition: int = -1  # -1: librdkafka's partitioner (by key)
    # (partition, offset) the broker gave it, set before on_ack runs
    where: tuple[int, int] | None = None


class Outbox:
    def __init__(self, settings: dict[str, Any]) -> None:
        conf = {**PRODUCER_SETTINGS, "linger.ms": 5, **settings}
        self.producer = KafkaProducer(conf)
        self._deferred: list[tuple[float, int, Outgoing]] = []
        self._seq = itertools.count()
        self.pending = 0

    def send(self, out: Outgoing) -> None:
        """Produce ``out``; ``out.on_ack`` runs (on the poll thread) once it is acknowledged."""
        self.pending += 1
        self._produce(out)

    def _produce(self, out: Outgoing) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                _log.error("could not deliver to %s (%s); sending again in %.0fs",
                           out.topic, err, RESEND_AFTER)
                self._defer(out, RESEND_AFTER)
                return
            if unconfirmed(err, msg):  # an implicit ack: maybe never written
                _log.warning("%s: delivery of job %s reported without an offset; sending it "
                             "again", out.topic, h.JobMeta.from_headers(out.headers).job_id)
                self._defer(out, 0)
                return
            self.pending -= 1
            out.where = (msg.partition(), msg.offset())
            out.on_ack()

        try:
            self.producer.produce(out.topic, value=out.value, key=out.key,
                                  partition=out.partition, headers=cast(Any, out.headers),
                                  on_delivery=delivered)
        except BufferError:  # local queue full: let poll() make room, never block here
            self._defer(out, 0.05)
        except ClientError as exc:
            _log.error("could not produce to %s (%s); trying again in %.0fs",
                       out.topic, exc, RESEND_AFTER)
            self._defer(out, RESEND_AFTER)

    def _defer(self, out: Outgoing, delay: float) -> None:
        heapq.heappush(self._deferred, (time.monotonic() + delay, next(self._seq), out))

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks and resend deferred records that are due."""
        self.producer.poll(timeout)
        if self._deferred:
            now = time.monotonic()
            while self._deferred and self._deferred[0][0] <= now:
                self._produce(heapq.heappop(self._deferred)[2])

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for outstanding records; returns how many are left."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            self.poll(0.05)
        return self.pending
