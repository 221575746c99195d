"""Where the worker's poll loop gets its Kafka clients: one factory, so that a test can drive
the real loop with stand-ins (tests/unit/test_worker_loop.py) and a Kafka adapter can replace
the construction in one place."""

from __future__ import annotations

from typing import Any

from .._connection import Consumer
from .._connection import Producer as KafkaProducer

__all__ = ["Clients"]


class Clients:
    """Builds the loop's consumers and producers from librdkafka settings."""

    def consumer(self, settings: dict[str, Any]) -> Any:
        return Consumer(settings)

    def producer(self, settings: dict[str, Any]) -> Any:
        return KafkaProducer(settings)
