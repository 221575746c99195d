"""streamjobs: background jobs as Avro events on partitioned Apache Kafka topics."""

from __future__ import annotations

from .config import KafkaConfig
from .errors import (
    BrokerUnavailable,
    CatalogueError,
    ConfigError,
    DecodeError,
    DeliveryFailed,
    JobFailure,
    KafkaError,
    PayloadError,
    PermanentError,
    RecordTooLarge,
    Retry,
    SchemaCompatibilityError,
    StreamjobsError,
    UnknownJobType,
    UnknownSchema,
)

__all__ = [
    "BrokerUnavailable",
    "CatalogueError",
    "ConfigError",
    "DecodeError",
    "DeliveryFailed",
    "JobFailure",
    "KafkaConfig",
    "KafkaError",
    "PayloadError",
    "PermanentError",
    "RecordTooLarge",
    "Retry",
    "SchemaCompatibilityError",
    "StreamjobsError",
    "UnknownJobType",
    "UnknownSchema",
]
