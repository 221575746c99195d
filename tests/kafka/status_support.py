"""Helpers of the status tests: one environment (topic prefix) of the status test app
(``tests.apps.status_tasks``) with every topic ``topics apply`` makes, a producer, an
in-process worker and status look-ups."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig
from streamjobs._ops.topics import apply, desired_topics
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._status import JobStatus, lookup, status_topic
from tests.conftest import wait_for
from tests.kafka.worker_support import WorkerThread

APP = "tests.apps.status_tasks:app"
SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "status_schemas"


@dataclass
class StatusEnv:
    kafka: KafkaConfig
    prefix: str
    catalogue: Catalogue
    producer: Producer
    extra_topics: list[str] = field(default_factory=list)

    @property
    def status_topic(self) -> str:
        return status_topic(self.prefix)

    def topic(self, job_type: str) -> str:
        return self.catalogue.get(job_type).topic

    def emit(self, job_type: str = "stask", **payload: Any) -> str:
        payload.setdefault("id", uuid.uuid4().hex[:12])
        job_id = self.producer.emit(job_type, payload)
        self.producer.flush(30)
        return job_id

    def status(self, job_id: str) -> JobStatus | None:
        return lookup(self.kafka, job_id, topic=self.status_topic)

    def states(self, job_id: str) -> list[str]:
        s = self.status(job_id)
        return [] if s is None else [t.state for t in s.transitions]

    def wait_state(self, job_id: str, state: str, timeout: float = 60) -> JobStatus:
        def reached() -> JobStatus | None:
            s = self.status(job_id)
            return s if s is not None and s.state == state else None

        got = wait_for(reached, timeout, 0.3, f"job {job_id} to be {state} "
                                              f"(now {self.states(job_id)})")
        assert isinstance(got, JobStatus)
        return got

    def cli_env(self, **extra: str) -> dict[str, str]:
        return {"STREAMJOBS_TOPIC_PREFIX": self.prefix, "STREAMJOBS_SCHEMAS": str(SCHEMAS),
                "STREAMJOBS_METRICS_PORT": "0", "STREAMJOBS_LOG_LEVEL": "warning",
                # Not the in-process workers' group: a worker the test kills must not hold up
                # their joins until its session times out.
                "STREAMJOBS_GROUP_ID": f"{self.prefix}cli-group", **extra}


@contextlib.contextmanager
def status_env(kafka: KafkaConfig, name: str) -> Iterator[StatusEnv]:
    """A private environment: every topic of the status test catalogue under a new prefix."""
    prefix = f"st-{name}-{uuid.uuid4().hex[:8]}."
    catalogue = Catalogue.load(SCHEMAS, topic_prefix=prefix)
    apply(kafka, catalogue)
    producer = Producer(catalogue, kafka)
    env = StatusEnv(kafka, prefix, catalogue, producer)
    try:
        yield env
    finally:
        producer.close()
        admin = AdminClient(kafka.client_settings())
        names = [s.name for s in desired_topics(catalogue)]
        names += [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)
                  and t not in names]
        for fut in admin.delete_topics(names).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


class InProcessWorker(WorkerThread):
    """The status test app's worker in a thread of the test process."""

    def __init__(self, env: StatusEnv, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
        from streamjobs._worker import Worker, WorkerSettings
        from tests.apps.status_tasks import app

        monkeypatch.setattr(app, "topic_prefix", env.catalogue.topic_prefix)
        monkeypatch.setattr(app, "_loaded", env.catalogue)  # already prefixed
        monkeypatch.delenv("STREAMJOBS_TEST_LEDGER", raising=False)
        settings.setdefault("group_id", f"{env.prefix}group")
        self._start(Worker(app, WorkerSettings(**settings), env.kafka))
