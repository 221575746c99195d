"""Rule: a record whose delivery is reported without an offset (librdkafka's implicit ack,
which may cover a record the broker never wrote) is produced again as it was: same partition,
key, value, headers and timestamp, on the real broker. The worker's outbox does it too, and
acknowledges the job once, for the copy.

librdkafka gives such a report only in a broker race (a refused first batch of a partition
followed by an accepted one), so the tests hide the offset of a real report instead."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streamjobs._config import KafkaConfig
from streamjobs._delivery import resend
from streamjobs._worker.outbox import Outbox, Outgoing
from tests.conftest import MakeTopic, wait_for

HEADERS = [("sj-id", b"0197a1b2-job"), ("sj-type", b"task"), ("empty", b"")]


def _read(config: KafkaConfig, topic: str, partition: int, count: int) -> list[Message]:
    c = Consumer({**config.client_settings(), "group.id": "sj-resend-read",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, partition, 0)])
    got: list[Message] = []
    try:
        while len(got) < count:
            msgs = c.consume(count - len(got), 10)
            assert msgs, f"only {len(got)} of {count} records"
            got.extend(m for m in msgs if m.error() is None)
    finally:
        c.close()
    return got


class _HideFirstOffset:
    """A delivered message whose offset() reads None, as after an implicit ack."""

    def __init__(self, msg: Message) -> None:
        self._msg = msg

    def offset(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._msg, name)


def test_resend_copies_the_record_byte_for_byte(kafka_config: KafkaConfig,
                                                make_topic: MakeTopic) -> None:
    topic = make_topic("resend", partitions=3)
    p = Producer({**kafka_config.client_settings(), "enable.idempotence": True, "acks": "all"})
    reports: list[Message] = []
    p.produce(topic, b"\x00\xffvalue", b"key-1", partition=2, headers=HEADERS,
              timestamp=1_700_000_000_123, on_delivery=lambda e, m: reports.append(m))
    assert p.flush(30) == 0 and reports[0].offset() is not None
    copies: list[Message] = []
    resend(p, reports[0], HEADERS, lambda e, m: copies.append(m), job_id="0197a1b2-job")
    assert p.flush(30) == 0
    assert copies[0].error() is None and copies[0].offset() == reports[0].offset() + 1
    assert reports[0].headers() is None  # why resend() takes the headers from its caller

    first, second = _read(kafka_config, topic, 2, 2)
    for m in (first, second):
        assert (m.key(), m.value(), m.headers()) == (b"key-1", b"\x00\xffvalue", HEADERS)
        assert m.timestamp()[1] == 1_700_000_000_123


def test_outbox_sends_an_unconfirmed_record_again_and_acks_it_once(
        kafka_config: KafkaConfig, make_topic: MakeTopic) -> None:
    topic = make_topic("outbox", partitions=1)
    outbox = Outbox(kafka_config.client_settings())
    real_produce = outbox.producer.produce
    hidden = []

    def produce(*args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def report(err: Any, msg: Message) -> None:
            if not hidden:  # the first report of the record loses its offset
                hidden.append(msg.offset())
                on_delivery(err, _HideFirstOffset(msg))
            else:
                on_delivery(err, msg)

        real_produce(*args, on_delivery=report, **kwargs)

    outbox.producer = _Proxy(outbox.producer, produce)
    acks: list[int] = []
    outbox.send(Outgoing(topic, b"k", b"v", [("sj-id", b"j1")], lambda: acks.append(1)))
    wait_for(lambda: (outbox.poll(0.1), acks)[1], 30, what="the copy's acknowledgement")
    assert outbox.flush(10) == 0 and acks == [1] and outbox.pending == 0
    records = _read(kafka_config, topic, 0, 2)  # the original and the copy
    assert [(m.key(), m.value()) for m in records] == [(b"k", b"v")] * 2


class _Proxy:
    """The outbox's producer with produce() wrapped; everything else passes through."""

    def __init__(self, inner: Producer, produce: Any) -> None:
        self._inner = inner
        self.produce = produce

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
