"""Delivery bookkeeping shared by ``Producer`` and ``AsyncProducer``.

One ``DeliveryTracker`` is the producer-wide delivery callback: successes return at once (a
``Producer`` gets none until a caller asks for per-record reports: its client has
``delivery.report.only.error``), failures are kept until the next ``flush()`` reports them.
A success without an offset (``unconfirmed``) is kept from happening by ``PRODUCER_SETTINGS``
and, where a callback still has the record's headers, sent again (per-message callbacks, the
worker's outbox, the replay and reprocess commands). A ``Poller`` thread serves librdkafka's
callbacks so ``emit`` never has to call ``poll()`` itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ._connection import TIMESTAMP_CREATE_TIME, ClientError
from .errors import DeliveryFailed, KafkaError

__all__ = ["PRODUCER_SETTINGS", "DeliveryTracker", "Poller", "resend",
           "unconfirmed"]

log = logging.getLogger("streamjobs.producer")

_KEEP = 1000  # failures kept in detail between flushes; the rest are only counted


def delivery_error(err: Any, msg: Any, job_id: str | None) -> DeliveryFailed:
    topic = msg.topic() if msg is not None else None
    what = f"job {job_id}" if job_id else "a job"  # on_delivery= callers learn which
    return DeliveryFailed(f"{what} to {topic}: {err.name()}: {err.str()}",
                          code=err.name(), topic=topic, job_id=job_id)


# Every idempotent producer of ours. One request in flight per broker connection: with more,
# a batch the broker refused with a retriable error (NOT_LEADER_OR_FOLLOWER right after a
# topic is created, say) can be followed by an accepted later batch, which librdkafka takes
# as proof the first was written ("implicit ack") and reports delivered without an offset.
# Throughput figures with and without it: docs/producer.md.
PRODUCER_SETTINGS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 1,
}


def unconfirmed(err: Any, msg: Any) -> bool:
    """A success report without an offset. librdkafka gives one when it *implicitly* acks a
    batch because a later batch of the partition succeeded. It assumes the broker wrote the
    earlier one; but a batch refused with a retriable error (NOT_LEADER_OR_FOLLOWER just after
    a topic is created, say) is not written, and a broker with no state yet for the producer
    id accepts the later batch's sequence gap, so the job is lost (docs/faults.md). With
    acks=all a real success always carries an offset."""
    return err is None and msg.offset() is None


def resend(client: Any, msg: Any, headers: Any, on_delivery: Callable[[Any, Any], None], *,
           job_id: str | None = None) -> str | None:
    """Produce ``msg`` again as it was: partition, key, value, timestamp and ``headers``
    (a delivery report carries none, so the caller keeps them). A duplicate if the broker did
    write it, which at-least-once allows; a loss otherwise. Returns why the copy could not be
    queued (local queue full, say), None once it is."""
    log.warning("%s [%s]: delivery reported without an offset (librdkafka acked it implicitly;"
                " the broker may not have written it): sending %s again", msg.topic(),
                msg.partition(), f"job {job_id}" if job_id else "it")
    kind, ts = msg.timestamp()
    try:
        client.produce(msg.topic(), msg.value(), msg.key(), partition=msg.partition(),
                       headers=headers, timestamp=ts if kind == TIMESTAMP_CREATE_TIME else 0,
                       on_delivery=on_delivery)
    except (BufferError, ClientError) as exc:
        return f"delivery unconfirmed and not sent again ({exc!r})"
    return None


class DeliveryTracker:
    """Collects failed deliveries. ``callback`` serves records nobody asked about: it cannot
    send an unconfirmed one again (a delivery report carries no headers, and keeping them per
    record halves emit's throughput), so it reports it as a failure for ``flush``, which the
    producer's one-request-in-flight setting makes impossible in the first place
    (``PRODUCER_SETTINGS``). ``per_message`` callbacks keep their record's headers and send an
    unconfirmed record again. ``client`` (set once the producer exists) is where copies go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: list[DeliveryFailed] = []
        self._dropped = 0
        self.client: Any = None
        # Unconfirmed successes (see ``unconfirmed``): sent again, or reported as failures.
        self.unconfirmed_count = 0
        record, count = self.record, self._count_unconfirmed

        # Runs once per record on the poll thread, holding the GIL that emit needs: a plain
        # function is called faster than an instance's __call__, and successes return at once.
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                record(delivery_error(err, msg, None))
            elif msg.offset() is None:
                count()
                record(DeliveryFailed(f"a job to {msg.topic()} [{msg.partition()}]: delivery "
                                      f"reported without an offset, so unconfirmed (librdkafka "
                                      f"acked it implicitly)", code="_UNCONFIRMED",
                                      topic=msg.topic()))

        self.callback = callback

    def _count_unconfirmed(self) -> None:
        with self._lock:
            self.unconfirmed_count += 1

    def again(self, msg: Any, job_id: str, headers: Any,
              on_delivery: Callable[[Any, Any], None]) -> DeliveryFailed | None:
        """Send an unconfirmed record again; the failure if it could not be queued."""
        self._count_unconfirmed()
        why = resend(self.client, msg, headers, on_delivery, job_id=job_id)
        if why is None:
            return None
        return DeliveryFailed(f"job {job_id} to {msg.topic()}: {why}", code="_UNCONFIRMED",
                              topic=msg.topic(), job_id=job_id)

    def record(self, failure: DeliveryFailed) -> None:
        log.warning("delivery failed: %s", failure)
        with self._lock:
            if len(self._failed) < _KEEP:
                self._failed.append(failure)
            else:
                self._dropped += 1

    def take(self) -> tuple[list[DeliveryFailed], int]:
        """The failures since the last call, and how many more were only counted."""
        with self._lock:
            failed, dropped = self._failed, self._dropped
            self._failed, self._dropped = [], 0
        return failed, dropped

    def raise_failures(self) -> None:
        failed, dropped = self.take()
        if not failed:
            return
        first = failed[0]
        total = len(failed) + dropped
        more = f" (and {total - 1} more)" if total > 1 else ""
        raise DeliveryFailed(f"{total} record(s) not delivered; first: {first}{more}",
                             code=first.code, topic=first.topic, job_id=first.job_id)

    def per_message(self, job_id: str, headers: Any,
                    user: Callable[[str, KafkaError | None], None], *,
                    track: bool = True) -> Callable[[Any, Any], None]:
        """A callback for one record whose caller asked to hear about its delivery; with
        ``track`` a failure is also kept for ``flush``. An unconfirmed success is sent again
        and ``user`` hears about the new copy instead."""

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None and msg.offset() is None:
                # Looked up on self, not closed over, so a wrapper installed there (the fault
                # suite's ledger) also sees the new copy's report.
                failure = self.again(msg, job_id, headers,
                                     self.per_message(job_id, headers, user, track=track))
                if failure is None:
                    return
            else:
                failure = None if err is None else delivery_error(err, msg, job_id)
            if failure is not None and track:
                self.record(failure)
            try:
                user(job_id, failure)
            except Exception:  # a raising callback must not kill the poller thread
                log.exception("on_delivery callback for job %s raised", job_id)

        return on_delivery


class Poller(threading.Thread):
    """Serves delivery callbacks in the background with a short poll timeout."""

    def __init__(self, client: Any, name: str = "streamjobs-producer-poll") -> None:
        super().__init__(name=name, daemon=True)
        self._client = client
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._client.poll(0.1)
            except Exception:  # callbacks are guarded; this is librdkafka itself
                log.exception("producer poll failed")

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
