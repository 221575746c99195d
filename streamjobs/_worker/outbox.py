"""The worker's producer: retry, re-wait and dead-letter records (``carry``: what the failure
router returned, and the status records acknowledged with them).

Idempotent, ``acks=all``. A failed record's offset is finished only when the broker
acknowledges the record that carries it on; the delivery callback runs on the poll thread
(which is the only caller of ``poll``), so it touches worker state without locks. A record
the broker refused is sent again after a pause, and one reported delivered without an offset
(librdkafka's implicit ack, see ``_delivery.unconfirmed``) at once: the partition's watermark
waits for it rather than losing the job.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .. import _headers as h
from .._connection import ClientError
from .._connection import Producer as KafkaProducer
from .._delivery import PRODUCER_SETTINGS, unconfirmed
from .router import Routed

__all__ = ["Outbox", "Outgoing", "release_below"]

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
    # (part, offset) of the consumed record it answers; exactly-once holds it until that
    # offset commits (transactions.py)
    cause: tuple[Any, int] | None = None
    # exactly-once: runs once the transaction carrying it committed (a follow-up's status)
    on_commit: Callable[[], None] | None = None


class Outbox:
    def __init__(self, settings: dict[str, Any],
                 make: Callable[[dict[str, Any]], Any] = KafkaProducer) -> None:
        conf = {**PRODUCER_SETTINGS, "linger.ms": 5, **settings}
        self.producer = make(conf)
        self._deferred: list[tuple[float, int, Outgoing]] = []
        self._seq = itertools.count()
        self.pending = 0

    def send(self, out: Outgoing) -> None:
        """Produce ``out``; ``out.on_ack`` runs (on the poll thread) once it is acknowledged."""
        self.pending += 1
        self._produce(out)

    def carry(self, routed: Routed, recorder: Any, done: Callable[[], None],
              cause: tuple[Any, int] | None = None) -> None:
        """Produce a failure's record (``router.Routed``) and, when ``recorder`` (the status
        recorder, or None) records it, its status record; ``done`` runs once both are
        acknowledged. A dead letter's status is written again with its place once known.
        ``cause``: the (part, offset) it answers (``Outgoing.cause``)."""
        status = routed.status if recorder is not None else None
        waiting = 1 if status is None else 2
        out: Outgoing | None = None

        def acked() -> None:
            nonlocal waiting
            waiting -= 1
            if not waiting:
                done()

        def dead_letter_acked() -> None:
            # The dead-letter record's place is known now: the same transition, with it.
            assert status is not None and out is not None and out.where is not None
            recorder.write(status[0], status[1], dataclasses.replace(
                status[2], partition=out.where[0], offset=out.where[1]))
            acked()

        if status is not None:
            partition, skey, svalue = recorder.record(*status)
            self.send(Outgoing(recorder.topic, skey, svalue, [], acked, partition))
        on_ack = dead_letter_acked if status is not None and status[2].state == "dead" else acked
        out = Outgoing(routed.topic, routed.key, routed.value, routed.headers, on_ack,
                       cause=cause)
        self.send(out)

    def _produce(self, out: Outgoing) -> None:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self._undelivered(out, err)
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
            self._undelivered(out, exc.args[0] if exc.args else exc)

    def _undelivered(self, out: Outgoing, err: Any) -> None:
        """The broker (or the client) refused ``out``: send it again after a pause."""
        _log.error("could not deliver to %s (%s); sending again in %.0fs",
                   out.topic, err, RESEND_AFTER)
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


def release_below(held: dict[Any, dict[int, list[Outgoing]]], part: Any,
                  below: int) -> list[Outgoing]:
    """The records ``held`` for ``part``'s offsets below ``below``, in offset order, taken
    out of ``held`` (records that may go only once their parent's offset is committed)."""
    mine = held.get(part)
    if not mine:
        return []
    out: list[Outgoing] = []
    for offset in sorted(o for o in mine if o < below):
        out += mine.pop(offset)
    if not mine:
        del held[part]
    return out
