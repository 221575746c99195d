"""Helpers of the worker tests: private topics for the test app, emitting raw job records,
reading ledgers, committed offsets and topic contents."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import dlq_topic, retry_topic, status_topic
from streamjobs._ops.topics import STATUS_CONFIG, STATUS_PARTITIONS
from streamjobs._schemas.catalogue import Catalogue
from tests.conftest import wait_visible

APP = "tests.apps.tasks:app"
SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "schemas"


@dataclass
class Env:
    """One test's private world: topic prefix, ledger file, group id, clients."""

    kafka: KafkaConfig
    admin: AdminClient
    prefix: str
    ledger: Path
    group: str
    catalogue: Catalogue = field(default_factory=lambda: Catalogue.load(SCHEMAS))
    created: list[str] = field(default_factory=list)
    _producer: Producer | None = None

    # -- topics ---------------------------------------------------------------------------------

    def topic(self, job_type: str = "task") -> str:
        return self.prefix + self.catalogue.get(job_type).topic

    def create_topics(self, *job_types: str, partitions: int | None = None) -> None:
        """Job topic, wait tiers (LogAppendTime) and DLQ of each job type."""
        new = []
        for name in job_types or ("task",):
            job = self.catalogue.get(name)
            topic = self.prefix + job.topic
            n = partitions or job.partitions
            new.append(NewTopic(topic, n, 1))
            new.extend(NewTopic(retry_topic(topic, t), n, 1,
                                config={"message.timestamp.type": "LogAppendTime"})
                       for t in self.catalogue.wait_tiers(job.topic))
            new.append(NewTopic(dlq_topic(topic), n, 1))
        # The status topic, as `topics apply` creates it: a worker warns when it is missing.
        new.append(NewTopic(status_topic(self.prefix), STATUS_PARTITIONS, 1,
                            config=dict(STATUS_CONFIG)))
        for name, fut in self.admin.create_topics(new).items():
            fut.result(timeout=30)
            self.created.append(name)
        wait_visible(self.admin, [t.topic for t in new])

    def delete_topics(self) -> None:
        if self.created:
            for fut in self.admin.delete_topics(self.created).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)

    # -- records --------------------------------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer({**self.kafka.client_settings(), "linger.ms": 5})
        return self._producer

    def emit(self, job_type: str = "task", *, partition: int | None = None,
             headers: dict[str, str] | None = None, topic: str | None = None,
             legacy: bool = False, **payload: Any) -> str:
        """Produce one job record as ``Producer.emit`` would (without the prefix support it
        lacks): the compact ``sj`` header, or with ``legacy`` the five headers records carried
        before it; returns the payload's ``id``."""
        codec = Codec(self.catalogue)
        payload.setdefault("id", uuid.uuid4().hex[:12])
        value = codec.encode(job_type, payload)
        job_id = h.new_job_id()
        now = int(time.time() * 1000)
        hdrs = ({h.JOB_ID: job_id, h.JOB_TYPE: job_type, h.ATTEMPT: "1",
                 h.CREATED_AT: str(now), h.SCHEMA: codec.fingerprint(job_type).hex()}
                if legacy else {h.META: h.compact(job_id, job_type)})
        hdrs.update(headers or {})
        key = payload.get("key") or None
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        self.producer.produce(topic or self.topic(job_type), value=value,
                              key=key.encode() if key else None,
                              headers=list(hdrs.items()), **kwargs)
        return str(payload["id"])

    def emit_raw(self, topic: str, value: bytes | None, headers: list[tuple[str, bytes]] | None,
                 key: bytes | None = None, partition: int = 0) -> None:
        self.producer.produce(topic, value=value, key=key, headers=headers, partition=partition)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def read(self, topic: str, expect: int, timeout: float = 30) -> list[Any]:
        """The first ``expect`` records of ``topic`` (all partitions)."""
        c = Consumer({**self.kafka.client_settings(), "group.id": f"reader-{uuid.uuid4().hex}",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe([topic])
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < expect and time.monotonic() < deadline:
                for m in c.consume(100, 0.5):
                    if m.error() is None:
                        out.append(m)
        finally:
            c.close()
        return out

    # -- results --------------------------------------------------------------------------------

    def lines(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(x) for x in self.ledger.read_text().splitlines() if x.strip()]

    def committed(self, topic: str, partitions: int = 3,
                  group: str | None = None) -> dict[int, int]:
        c = Consumer({**self.kafka.client_settings(), "group.id": group or self.group})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        finally:
            c.close()
        return {tp.partition: tp.offset for tp in tps}

    def end_offsets(self, topic: str, partitions: int = 3) -> dict[int, int]:
        c = Consumer({**self.kafka.client_settings(), "group.id": "sj-watermarks"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(partitions)}
        finally:
            c.close()

    def cli_env(self, **extra: str) -> dict[str, str]:
        return {"STREAMJOBS_TOPIC_PREFIX": self.prefix, "STREAMJOBS_TEST_LEDGER":
                str(self.ledger), "STREAMJOBS_GROUP_ID": self.group,
                "STREAMJOBS_METRICS_PORT": "0", "STREAMJOBS_LOG_LEVEL": "warning", **extra}


@pytest.fixture(name="env")
def env_fixture(kafka_config: KafkaConfig, admin: AdminClient, unique: str,
        tmp_path: Path) -> Iterator[Env]:
    e = Env(kafka_config, admin, prefix=f"{unique}.", ledger=tmp_path / "ledger.jsonl",
            group=f"{unique}-group")
    yield e
    if e._producer is not None:
        e._producer.flush(10)
    e.delete_topics()


class WorkerThread:
    """A ``Worker`` running in a thread of the test process: ``stop`` stops it and raises
    what its ``run`` raised."""

    worker: Any
    error: BaseException | None
    code: int | None

    def _start(self, worker: Any) -> None:
        import threading

        self.worker = worker
        self.error = None
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.code = self.worker.run(install_signals=False)
        except BaseException as exc:
            self.error = exc

    def stop(self, timeout: float = 40) -> None:
        self.worker.stop("test")
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "worker did not stop"
        if self.error is not None:
            raise self.error


class AppWorker(WorkerThread):
    """A worker of a test app (in tests.apps) running in a thread of the test process, on
    ``env``'s prefix and ledger; ``events`` holds every event it emitted."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch, app: Any,
                 default_types: tuple[str, ...], **settings: Any) -> None:
        from streamjobs._worker import Worker, WorkerSettings
        from streamjobs.events import Event, EventBus

        monkeypatch.setattr(app, "topic_prefix", env.prefix)
        monkeypatch.setenv("STREAMJOBS_TEST_LEDGER", str(env.ledger))
        settings.setdefault("group_id", env.group)
        settings.setdefault("job_types", default_types)
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self._start(Worker(app, WorkerSettings(**settings), env.kafka, bus))

    def of(self, kind: type) -> list[Any]:
        return [e for e in list(self.events) if isinstance(e, kind)]


class InProcess(AppWorker):
    """A worker of the test app (tests.apps.tasks) running in a thread of the test process."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
        from tests.apps.tasks import app

        super().__init__(env, monkeypatch, app, ("task",), **settings)
