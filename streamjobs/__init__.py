"""streamjobs: background jobs as Avro events on partitioned Apache Kafka topics.

Everything a user imports comes from here: ``Producer``/``AsyncProducer`` to emit jobs (and
look them up: ``status``, ``watch`` -> ``JobStatus``), ``App``/``JobContext`` to handle them
(``run_worker``/``Worker`` with ``WorkerSettings`` to run them in-process), ``Catalogue`` and
``RetryPolicy`` for the job types, ``KafkaConfig`` for the connection, ``RegistryConfig`` for a
schema registry, ``JobMeta`` to read a record's job headers, ``desired_topics`` for the
topics a catalogue needs, and the exception tree (defined in ``streamjobs.errors``, whose class
paths are what ``sj-error-class`` records). Observability has its own public modules,
``streamjobs.events`` and ``streamjobs.listeners``; tests use ``streamjobs.testing``.

The modules behind these names are private (``_producer``, ``_worker``, ...; docs/DESIGN.md
draws the map). Emitters never import the worker: the heavier names load on first use.
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
    DevBrokerError,
    GroupActive,
    GroupNotFound,
    JobFailure,
    JobTimeout,
    KafkaError,
    PayloadError,
    PermanentError,
    ProducerFenced,
    RecordTooLarge,
    RegistryError,
    RegistryUnavailable,
    Retry,
    RunawayJobs,
    SchemaCompatibilityError,
    StreamjobsError,
    TopicNotFound,
    UnknownJobType,
    UnknownSchema,
    UnknownSchemaId,
)

if TYPE_CHECKING:
    from ._headers import JobMeta
    from ._ops.topics import TopicSpec, desired_topics
    from ._producer import AsyncProducer, Job, Producer
    from ._retry import RetryPolicy
    from ._schemas.catalogue import Catalogue, JobType
    from ._schemas.registry import RegistryConfig
    from ._status import JobStatus, StatusIndex, Transition
    from ._worker import App, JobContext, Worker, WorkerSettings, run_worker

_LAZY = {
    "App": "streamjobs._worker",
    "AsyncProducer": "streamjobs._producer",
    "Catalogue": "streamjobs._schemas.catalogue",
    "Job": "streamjobs._producer",
    "JobContext": "streamjobs._worker",
    "JobMeta": "streamjobs._headers",
    "JobStatus": "streamjobs._status",
    "JobType": "streamjobs._schemas.catalogue",
    "Producer": "streamjobs._producer",
    "RegistryConfig": "streamjobs._schemas.registry",
    "RetryPolicy": "streamjobs._retry",
    "StatusIndex": "streamjobs._status",
    "TopicSpec": "streamjobs._ops.topics",
    "Transition": "streamjobs._status",
    "Worker": "streamjobs._worker",
    "WorkerSettings": "streamjobs._worker",
    "desired_topics": "streamjobs._ops.topics",
    "run_worker": "streamjobs._worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamjobs' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "App",
    "AsyncProducer",
    "BrokerUnavailable",
    "Catalogue",
    "CatalogueError",
    "ConfigError",
    "DecodeError",
    "DeliveryFailed",
    "DevBrokerError",
    "GroupActive",
    "GroupNotFound",
    "Job",
    "JobContext",
    "JobFailure",
    "JobMeta",
    "JobStatus",
    "JobTimeout",
    "JobType",
    "KafkaConfig",
    "KafkaError",
    "PayloadError",
    "PermanentError",
    "Producer",
    "ProducerFenced",
    "RecordTooLarge",
    "RegistryConfig",
    "RegistryError",
    "RegistryUnavailable",
    "Retry",
    "RetryPolicy",
    "RunawayJobs",
    "SchemaCompatibilityError",
    "StatusIndex",
    "StreamjobsError",
    "TopicNotFound",
    "TopicSpec",
    "Transition",
    "UnknownJobType",
    "UnknownSchema",
    "UnknownSchemaId",
    "Worker",
    "WorkerSettings",
    "desired_topics",
    "run_worker",
]
