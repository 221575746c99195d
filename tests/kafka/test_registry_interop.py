"""Registry framing against a real broker and a real Apicurio Registry: registration of the
catalogue's history, emit -> confluent-kafka's AvroDeserializer, confluent-kafka's
AvroSerializer -> our worker (with and without sj- headers, next to single-object records on
the same topic), a registry that cannot be reached, and the dead-letter tools on both
framings."""

from __future__ import annotations

import contextlib
import json
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec, registry_schema
from streamjobs._avro.framing import SINGLE_OBJECT
from streamjobs._config import KafkaConfig
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._schemas.registry import RegistryConfig
from tests.conftest import Proc, RunCli, SpawnCli, wait_for
from tests.kafka.jobs_catalogue import read
from tests.kafka.registry_support import registry_url_fixture  # noqa: F401 - fixture
from tests.ports import free_port_block

SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "registry_schemas"
APP = "tests.apps.registry_jobs:app"


@dataclass
class World:
    kafka: KafkaConfig
    prefix: str
    url: str
    ledger: Path
    group: str

    @property
    def topic(self) -> str:
        return f"{self.prefix}orders"

    @property
    def subject(self) -> str:
        return f"{self.topic}-value"

    def catalogue(self) -> Catalogue:
        return Catalogue.load(SCHEMAS, topic_prefix=self.prefix)

    def env(self, registry_url: str | None = None, **extra: str) -> dict[str, str]:
        return {"STREAMJOBS_TOPIC_PREFIX": self.prefix, "STREAMJOBS_TEST_LEDGER": str(self.ledger),
                "STREAMJOBS_GROUP_ID": self.group, "STREAMJOBS_METRICS_PORT": "0",
                "STREAMJOBS_LOG_LEVEL": "warning",
                "STREAMJOBS_REGISTRY_URL": registry_url or self.url, **extra}

    def lines(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(x) for x in self.ledger.read_text().splitlines() if x.strip()]


@pytest.fixture
def world(kafka_config: KafkaConfig, admin: AdminClient, unique: str, registry_url: str,
          tmp_path: Path, run_cli: RunCli) -> Iterator[World]:
    w = World(kafka_config, f"{unique}.", registry_url, tmp_path / "ledger.jsonl",
              f"{unique}-group")
    res = run_cli("topics", "apply", "--schemas", str(SCHEMAS), env=w.env())
    assert res.returncode == 0, res.stderr
    yield w
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(w.prefix)]
    for fut in (admin.delete_topics(mine).values() if mine else ()):
        with contextlib.suppress(Exception):
            fut.result(timeout=30)


def _stop(worker: Proc) -> None:
    """SIGTERM: the worker commits what it finished before it exits."""
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output()


def _confluent(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def _single_object(world: World, payload: dict[str, Any]) -> bytes:
    return Codec(world.catalogue().with_framing(SINGLE_OBJECT)).encode("order", payload)


def test_topics_apply_registers_every_version_in_order(world: World, run_cli: RunCli) -> None:
    """Rule: `topics apply` with a registry registers v1 then v2 of the job type's schema under
    "<topic>-value" (the registry's history matches schemas/), re-running it adds nothing, and
    `schemas check` asks the registry and passes."""
    client = _confluent(world.url)
    assert client.get_versions(world.subject) == [1, 2]
    catalogue = world.catalogue()
    for number, version in zip((1, 2), catalogue.versions("test.Order"), strict=True):
        registered = client.get_version(world.subject, number).schema.schema_str
        assert json.loads(registered) == json.loads(registry_schema(version))
    again = run_cli("topics", "apply", "--schemas", str(SCHEMAS), "--json", env=world.env())
    assert again.returncode == 0, again.stderr
    assert [r["version"] for r in json.loads(again.stdout)["registered"]] == [1, 2]
    assert client.get_versions(world.subject) == [1, 2]
    check = run_cli("schemas", "check", "--schemas", str(SCHEMAS), "--json", env=world.env())
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout)["registry_subjects_checked"] == 1


def test_emitted_records_are_read_by_confluent_avro_deserializer(world: World,
                                                                 run_cli: RunCli) -> None:
    """Rule: a job emitted with registry framing (Python API and CLI) is 00 + the registry id of
    the current schema + the body, and confluent-kafka's AvroDeserializer decodes it."""
    producer = Producer(world.catalogue(), world.kafka, registry=RegistryConfig(world.url))
    try:
        producer.emit("order", {"id": "o-1", "amount": 5, "note": "api"})
        producer.flush(10)
    finally:
        producer.close()
    res = run_cli("emit", "order", "--json", '{"id": "o-2", "amount": 6}', "--schemas",
                  str(SCHEMAS), env=world.env())
    assert res.returncode == 0, res.stderr
    client = _confluent(world.url)
    current_id = client.get_version(world.subject, 2).schema_id
    deserialize = AvroDeserializer(client)
    payloads = []
    for m in read(world.kafka, world.topic, 2):
        value = m.value()
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == current_id
        assert h.JobMeta.from_headers(m.headers()).job_type == "order"
        payloads.append(deserialize(value, SerializationContext(world.topic,
                                                                MessageField.VALUE)))
    assert sorted(payloads, key=lambda p: p["id"]) == [
        {"id": "o-1", "amount": 5, "note": "api"}, {"id": "o-2", "amount": 6, "note": ""}]


def test_worker_runs_confluent_serialized_jobs_with_and_without_headers(
        world: World, spawn_cli: SpawnCli) -> None:
    """Rule: a worker runs records written by confluent-kafka's AvroSerializer with an older
    registered schema (v1, resolved to v2): with sj-type/sj-id headers they keep their id;
    without any header the topic's single job type runs them under an id derived from their
    position; single-object records on the same topic run too (migration)."""
    v1 = registry_schema(world.catalogue().versions("test.Order")[0])
    serialize = AvroSerializer(_confluent(world.url), v1, conf={"auto.register.schemas": False})
    ctx = SerializationContext(world.topic, MessageField.VALUE)
    producer = KafkaProducer(world.kafka.client_settings())
    job_id = str(uuid.uuid4())
    producer.produce(world.topic, serialize({"id": "with-headers", "amount": 1}, ctx),
                     key=b"a", headers=[(h.JOB_TYPE, b"order"), (h.JOB_ID, job_id.encode())])
    producer.produce(world.topic, serialize({"id": "bare", "amount": 2}, ctx), key=b"b")
    producer.produce(world.topic, _single_object(world, {"id": "single", "amount": 3,
                                                         "note": "so"}),
                     key=b"c", headers=[(h.JOB_TYPE, b"order"), (h.JOB_ID, b"so-1")])
    producer.flush(10)
    worker = spawn_cli("worker", APP, env=world.env())
    wait_for(lambda: len(world.lines()) >= 3, timeout=60, what="3 jobs run")
    _stop(worker)
    runs = {x["payload"]["id"]: x for x in world.lines()}
    assert runs["with-headers"]["payload"] == {"id": "with-headers", "amount": 1, "note": ""}
    assert runs["with-headers"]["job_id"] == job_id
    assert runs["bare"]["job_type"] == "order" and runs["bare"]["attempt"] == 1
    assert uuid.UUID(runs["bare"]["job_id"]).version == 5
    assert runs["single"]["payload"]["note"] == "so" and runs["single"]["job_id"] == "so-1"
    assert len(world.lines()) == 3


def test_unreachable_registry_retries_then_dead_letters_and_dlq_tools_handle_both_framings(
        world: World, spawn_cli: SpawnCli, run_cli: RunCli) -> None:
    """Rule: a registry-framed job whose schema id cannot be resolved (registry unreachable)
    is never lost: it climbs the retry ladder and is dead-lettered as unknown_schema with its
    bytes intact; `dlq list` decodes dead letters of both framings; `dlq reprocess` sends it
    back and a worker with the registry runs it."""
    producer = Producer(world.catalogue(), world.kafka, registry=RegistryConfig(world.url))
    try:
        producer.emit("order", {"id": "reg", "amount": 7})
        producer.flush(10)
    finally:
        producer.close()
    so = KafkaProducer(world.kafka.client_settings())
    so.produce(world.topic, _single_object(world, {"id": "so", "amount": 8, "note": "fail"}),
               headers=[(h.JOB_TYPE, b"order"), (h.JOB_ID, b"so-2")])  # a dead letter at once
    so.flush(10)
    dead = f"http://127.0.0.1:{free_port_block(1)}/apis/ccompat/v7"
    worker = spawn_cli("worker", APP, env=world.env(registry_url=dead))
    dlq = f"{world.topic}.dlq"
    records = read(world.kafka, dlq, 2, timeout=60)
    _stop(worker)
    assert world.lines() == []
    reasons = {h.get(m.headers(), h.JOB_ID): h.get(m.headers(), h.DLQ_REASON) for m in records}
    assert list(reasons.values()).count("unknown_schema") == 1
    reg_record = next(m for m in records if h.get(m.headers(), h.DLQ_REASON) == "unknown_schema")
    assert h.get(reg_record.headers(), h.ATTEMPT) == "2"
    assert "UnknownSchemaId" in (h.get(reg_record.headers(), h.ERROR_CLASS) or "")

    listed = run_cli("dlq", "list", "--topic", world.topic, "--schemas", str(SCHEMAS),
                     "--json", env=world.env())
    assert listed.returncode == 0, listed.stderr
    values = {s["value"]["payload"]["id"]: s["value"] for s in json.loads(listed.stdout)["records"]}
    assert values["reg"]["framing"] == "registry" and values["reg"]["schema_id"] is not None
    assert values["so"]["framing"] == SINGLE_OBJECT and values["so"]["version"] == 2

    where = f"{reg_record.partition()}:{reg_record.offset()}"
    shown = run_cli("dlq", "show", "--topic", world.topic, where, "--schemas", str(SCHEMAS),
                    "--json", env=world.env())
    assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert story["value"]["payload"] == {"id": "reg", "amount": 7, "note": ""}
    assert story["fits_current_schema"] is True and story["reason"] == "unknown_schema"

    res = run_cli("dlq", "reprocess", "--topic", world.topic, "--schemas", str(SCHEMAS),
                  "--reason", "unknown_schema", "--execute", "--json", env=world.env())
    assert res.returncode == 0, res.stdout + res.stderr
    worker = spawn_cli("worker", APP, env=world.env())
    wait_for(lambda: world.lines(), timeout=60, what="the reprocessed job to run")
    _stop(worker)
    [run] = world.lines()
    assert run["payload"] == {"id": "reg", "amount": 7, "note": ""}
