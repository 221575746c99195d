"""Test helpers for the producer and topics tests: a catalogue whose topics are named after the
test's ``unique`` prefix, and reading records back with a plain consumer."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig

ROOT = Path(__file__).resolve().parents[2]


def write_catalogue(directory: Path, prefix: str, *, partitions: int = 2,
                    replication_factor: int = 1, retention: str = "7d") -> Path:
    """``send_welcome_email`` -> ``<prefix>.emails`` (key_field user_id), retry 1s x2, and
    ``make_thumbnail`` -> ``<prefix>.images``."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "schemas").glob("demo.*.avsc"):
        shutil.copy(f, directory)
    (directory / "catalogue.toml").write_text(f"""
[defaults]
partitions = {partitions}
replication_factor = {replication_factor}
retention = "{retention}"
retry = {{ delays = ["1s"], max_attempts = 2 }}

[jobs.send_welcome_email]
schema = "demo.WelcomeEmail"
topic = "{prefix}.emails"
key_field = "user_id"

[jobs.make_thumbnail]
schema = "demo.Thumbnail"
topic = "{prefix}.images"
key_field = "image_id"
""")
    return directory


def read(config: KafkaConfig, topic: str, count: int, timeout: float = 20) -> list[Message]:
    """The first ``count`` records of ``topic`` (all partitions), failing after ``timeout``."""
    consumer = Consumer({**config.client_settings(), "group.id": f"{topic}.reader",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(out)} of {count} records from {topic}")
            for msg in consumer.consume(num_messages=count - len(out), timeout=0.5):
                if msg.error() is None:
                    out.append(msg)
    finally:
        consumer.close()
    return out


def total_records(config: KafkaConfig, topic: str) -> int:
    """Sum of the high watermarks: how many records were ever written to ``topic``."""
    consumer = Consumer({**config.client_settings(), "group.id": f"{topic}.watermarks"})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in meta.partitions)
    finally:
        consumer.close()


def delete_topics_with_prefix(admin: AdminClient, prefix: str) -> None:
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


