"""Delivery bookkeeping shared by ``Producer`` and ``AsyncProducer``.

One ``DeliveryTracker`` is the producer-wide delivery callback: successes return at once (the
hot path), failures are kept until the next ``flush()`` reports them. A ``Poller`` thread serves
librdkafka's callbacks so ``emit`` never has to call ``poll()`` itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from . import headers as h
from .errors import BrokerUnavailable, DeliveryFailed, KafkaError

__all__ = ["DeliveryTracker", "Poller", "kafka_error"]

log = logging.getLogger("streamjobs.producer")

# librdkafka codes meaning "no broker answered" rather than "the broker said no".
_UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})
_KEEP = 1000  # failures kept in detail between flushes; the rest are only counted


def kafka_error(err: Any, message: str, *, topic: str | None = None) -> KafkaError:
    """A streamjobs error for a ``confluent_kafka.KafkaError``."""
    code = err.name() if hasattr(err, "name") else None
    text = f"{message}: {err.str() if hasattr(err, 'str') else err}"
    if code in _UNREACHABLE:
        return BrokerUnavailable(text, code=code, topic=topic)
    return KafkaError(text, code=code, topic=topic)


def delivery_error(err: Any, msg: Any, job_id: str | None) -> DeliveryFailed:
    topic = msg.topic() if msg is not None else None
    return DeliveryFailed(f"job {job_id} to {topic}: {err.name()}: {err.str()}",
                          code=err.name(), topic=topic, job_id=job_id)


class DeliveryTracker:
    """Collects failed deliveries; ``callback`` is the librdkafka delivery callback."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: list[DeliveryFailed] = []
        self._dropped = 0
        # Successes librdkafka reported without an offset (see ``unplaced``).
        self.unplaced_count = 0
        record, unplaced = self.record, self.unplaced

        # Runs once per record on the poll thread, holding the GIL that emit needs: a plain
        # function is called faster than an instance's __call__, and successes return at once.
        def callback(err: Any, msg: Any) -> None:
            if err is not None:
                record(delivery_error(err, msg, h.get(msg.headers(), h.JOB_ID)))
            elif msg.offset() is None:
                unplaced(msg, None)

        self.callback = callback

    def unplaced(self, msg: Any, job_id: str | None) -> None:
        """A success without an offset. With acks=all, librdkafka reports one only when the
        broker answered a *retried* batch as a duplicate of one already written, so the record
        should be in the log, but nobody can say where. The fault suite once saw such a job
        missing from its topic (docs/faults.md, finding 6): worth a warning naming the job."""
        with self._lock:
            self.unplaced_count += 1
        log.warning("job %s delivered to %s [%s] without an offset (the broker took a retried "
                    "batch as already written); check it arrived if this repeats",
                    job_id or h.get(msg.headers(), h.JOB_ID), msg.topic(), msg.partition())

    def __call__(self, err: Any, msg: Any) -> None:
        self.callback(err, msg)

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

    def per_message(self, job_id: str, user: Callable[[str, KafkaError | None], None], *,
                    track: bool = True) -> Callable[[Any, Any], None]:
        """A callback for one record whose caller asked to hear about its delivery; with
        ``track`` a failure is also kept for ``flush``."""

        def on_delivery(err: Any, msg: Any) -> None:
            failure = None if err is None else delivery_error(err, msg, job_id)
            if failure is not None and track:
                self.record(failure)
            elif failure is None and msg.offset() is None:
                self.unplaced(msg, job_id)
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
