"""The local Apache Kafka broker for development, the demo and the tests (``streamjobs dev``).

Real Kafka from the official jars (Maven Central or ``$KAFKA_HOME``), KRaft mode, one JVM acting
as broker and controller, bound to 127.0.0.1.
"""

from __future__ import annotations

from .broker import BrokerState, DevBroker
from .jars import KAFKA_VERSION, resolve_classpath

__all__ = ["KAFKA_VERSION", "BrokerState", "DevBroker", "resolve_classpath"]
