"""The Kafka adapter against the real broker: clients it builds work, its back-off drains a
full local queue, its translation names the broker's error, its reachability check tells a
broker from nothing."""

from __future__ import annotations

import time

import pytest

from streamjobs import _connection as connection
from streamjobs._config import KafkaConfig
from streamjobs.errors import BrokerUnavailable
from tests.conftest import MakeTopic


def test_check_reachable_answers_for_the_broker_and_refuses_a_dead_port(
        kafka_config: KafkaConfig) -> None:
    """A metadata answer passes; a port nobody listens on is BrokerUnavailable naming the
    address, within the bounded wait."""
    connection.check_reachable(kafka_config, timeout=10)
    dead = KafkaConfig(bootstrap_servers="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as info:
        connection.check_reachable(dead, timeout=2)
    assert time.monotonic() - started < 10
    assert info.value.code == "_TRANSPORT" and "127.0.0.1:1" in str(info.value)


def test_refusal_is_none_for_plaintext_without_asking_the_broker() -> None:
    """PLAINTEXT has no credentials to refuse: no probe, even of an address nobody serves."""
    started = time.monotonic()
    assert connection.refusal(KafkaConfig(bootstrap_servers="127.0.0.1:1")) is None
    assert time.monotonic() - started < 1


def test_until_queued_drains_a_full_queue_and_every_record_arrives(
        kafka_config: KafkaConfig, make_topic: MakeTopic) -> None:
    """With a one-record local queue, produce() meets BufferError; the back-off polls until
    each record is queued, and all of them are delivered."""
    topic = make_topic("q", partitions=1)
    producer = connection.producer(kafka_config, {"queue.buffering.max.messages": 1,
                                                  "linger.ms": 50})
    delivered: list[int] = []
    attempts = 0

    def send(i: int) -> None:
        nonlocal attempts
        attempts += 1
        producer.produce(topic, str(i).encode(),
                         on_delivery=lambda err, msg: delivered.append(msg.offset())
                         if err is None else None)

    for i in range(20):
        queued, _ = connection.until_queued(producer, lambda i=i: send(i), timeout=30)
        assert queued
    assert producer.flush(30) == 0
    assert len(delivered) == 20
    assert attempts > 20  # the queue was full at least once, and the back-off retried


def test_translate_names_the_brokers_error(kafka_config: KafkaConfig, unique: str) -> None:
    """Describing a missing topic fails with the broker's code, kept by the translation."""
    admin = connection.admin(kafka_config)
    res = connection.ConfigResource(connection.ResourceType.TOPIC, f"{unique}.missing")
    fut = admin.describe_configs([res], request_timeout=10)[res]
    with pytest.raises(connection.ClientError) as info:
        fut.result(timeout=15)
    err = connection.translate(info.value, "describe", topic=res.name)
    assert err.code == "UNKNOWN_TOPIC_OR_PART" and err.topic == res.name


def test_admin_call_returns_the_answer(kafka_config: KafkaConfig, unique: str) -> None:
    """A group admin call through the retry returns the broker's answer (a group nobody
    joined is reported, not an error)."""
    admin = connection.admin(kafka_config)
    group = f"{unique}.g"
    desc = connection.admin_call("describe", lambda: admin.describe_consumer_groups(
        [group], request_timeout=10)[group].result())
    assert desc.group_id == group
