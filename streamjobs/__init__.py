"""streamjobs: background jobs as Avro events on partitioned Apache Kafka topics.

The public surface: ``Producer``/``AsyncProducer`` to emit jobs (and look them up:
``status``, ``watch`` -> ``JobStatus``), ``App``/``JobContext`` to
handle them, ``Catalogue`` and ``RetryPolicy`` for the job types, ``KafkaConfig`` for the
connection, ``RegistryConfig`` for a schema registry (registry framing), and the exception
tree of ``streamjobs.errors``. Emitters never import the worker: the heavier names load on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config import KafkaConfig
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
    RegistryError,
    RegistryUnavailable,
    Retry,
    SchemaCompatibilityError,
    StreamjobsError,
    UnknownJobType,
    UnknownSchema,
    UnknownSchemaId,
)

if TYPE_CHECKING:
    from ._producer import AsyncProducer, Job, Producer
    from ._retry import RetryPolicy
    from ._schemas.catalogue import Catalogue, JobType
    from ._schemas.registry import RegistryConfig
    from ._status import JobStatus, StatusIndex, Transition
    from ._worker import App, JobContext

_LAZY = {
    "App": "streamjobs._worker", "JobContext": "streamjobs._worker",
    "AsyncProducer": "streamjobs._producer", "Job": "streamjobs._producer",
    "Producer": "streamjobs._producer", "Catalogue": "streamjobs._schemas.catalogue",
    "JobType": "streamjobs._schemas.catalogue", "RetryPolicy": "streamjobs._retry",
    "RegistryConfig": "streamjobs._schemas.registry",
    "JobStatus": "streamjobs._status", "StatusIndex": "streamjobs._status",
    "Transition": "streamjobs._status",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamjobs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "App",
    "AsyncProducer",
    "BrokerUnavailable",
    "Catalogue",
    "CatalogueError",
    "ConfigError",
    "DecodeError",
    "DeliveryFailed",
    "Job",
    "JobContext",
    "JobFailure",
    "JobStatus",
    "JobType",
    "KafkaConfig",
    "KafkaError",
    "PayloadError",
    "PermanentError",
    "Producer",
    "RecordTooLarge",
    "RegistryConfig",
    "RegistryError",
    "RegistryUnavailable",
    "Retry",
    "RetryPolicy",
    "SchemaCompatibilityError",
    "StatusIndex",
    "StreamjobsError",
    "Transition",
    "UnknownJobType",
    "UnknownSchema",
    "UnknownSchemaId",
]
