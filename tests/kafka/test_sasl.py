"""SASL end to end against a real broker started with `streamjobs dev up --sasl` (its own ports
and state directory; the shared broker is never touched): SCRAM and PLAIN credentials flow from
the STREAMJOBS_* variables to every client, a wrong password fails fast with one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs._config import KafkaConfig
from streamjobs._dev.broker import DEV_SASL_PASSWORD, DEV_SASL_USER
from tests.conftest import ROOT, SpawnCli, streamjobs_exe, wait_for
from tests.ports import free_port_block

from .worker_support import APP, SCHEMAS


@dataclass(frozen=True)
class SaslBroker:
    port: int
    env: dict[str, str]  # STREAMJOBS_DEV_DIR of this broker
    plain_bootstrap: str
    sasl_bootstrap: str

    def config(self, mechanism: str, password: str = DEV_SASL_PASSWORD) -> KafkaConfig:
        return KafkaConfig(bootstrap_servers=self.sasl_bootstrap,
                           security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                           sasl_username=DEV_SASL_USER, sasl_password=password)

    def cli_env(self, mechanism: str, password: str = DEV_SASL_PASSWORD) -> dict[str, str]:
        return {"STREAMJOBS_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
                "STREAMJOBS_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "STREAMJOBS_SASL_MECHANISM": mechanism,
                "STREAMJOBS_SASL_USERNAME": DEV_SASL_USER,
                "STREAMJOBS_SASL_PASSWORD": password}


def _cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*streamjobs_exe(), *args], env={**os.environ, **env}, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    port = free_port_block(3)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path_factory.mktemp("sasl-dev"))}
    up = _cli("dev", "up", "--port", str(port), "--sasl", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"SASL_PLAINTEXT on 127.0.0.1:{port + 2}" in up.stdout
        yield SaslBroker(port, env, f"127.0.0.1:{port}", f"127.0.0.1:{port + 2}")
    finally:
        down = _cli("dev", "down", "--port", str(port), "--wipe", env=env)
        assert down.returncode == 0, down.stderr


def test_status_reports_the_sasl_listener_and_plaintext_stays_open(
        sasl_broker: SaslBroker, kafka_config: KafkaConfig) -> None:
    """Rule: `dev up --sasl` adds a SASL_PLAINTEXT listener on port+2*nodes (reported by
    `dev status --json`); the PLAINTEXT listener keeps working without credentials."""
    out = _cli("dev", "status", "--port", str(sasl_broker.port), "--json", env=sasl_broker.env)
    assert out.returncode == 0, out.stderr
    status = orjson.loads(out.stdout)
    assert status["sasl_bootstrap"] == sasl_broker.sasl_bootstrap
    md = AdminClient({"bootstrap.servers": sasl_broker.plain_bootstrap}).list_topics(timeout=10)
    assert md.brokers


def test_scram_credentials_reach_topics_emit_and_worker(
        sasl_broker: SaslBroker, spawn_cli: SpawnCli, tmp_path: Path,
        kafka_config: KafkaConfig) -> None:
    """Rule: with SCRAM credentials in the STREAMJOBS_* variables, `topics apply` creates the
    topics over SASL (admin client), `emit` produces over SASL (producer) and a worker process
    runs the jobs (consumer and retry/DLQ producer): SCRAM-SHA-256 for the first two,
    SCRAM-SHA-512 for the worker. No command prints the password."""
    scram256 = {**sasl_broker.cli_env("SCRAM-SHA-256"), "STREAMJOBS_SCHEMAS": str(SCHEMAS)}
    applied = _cli("topics", "apply", env=scram256, timeout=60)
    assert applied.returncode == 0, applied.stderr
    listed = AdminClient(sasl_broker.config("SCRAM-SHA-256").client_settings()).list_topics(
        timeout=10).topics
    assert {"tasks", "tasks.dlq"} <= set(listed)
    ids = [f"job-{i}" for i in range(6)]
    jobs = "\n".join(orjson.dumps({"type": "task", "payload": {"id": i, "key": i}}).decode()
                     for i in ids)
    emitted = subprocess.run([*streamjobs_exe(), "emit", "--file", "-"], input=jobs,
                             env={**os.environ, **scram256}, cwd=str(ROOT), capture_output=True,
                             text=True, timeout=60)
    assert emitted.returncode == 0, emitted.stderr
    ledger = tmp_path / "ledger.jsonl"
    proc = spawn_cli("worker", APP, "--job-types", "task", env={
        **sasl_broker.cli_env("SCRAM-SHA-512"), "STREAMJOBS_TEST_LEDGER": str(ledger),
        "STREAMJOBS_GROUP_ID": f"sasl-{uuid.uuid4().hex[:8]}", "STREAMJOBS_METRICS_PORT": "0",
        "STREAMJOBS_TOPIC_PREFIX": ""})

    def ran() -> set[str]:
        if not ledger.exists():
            return set()
        return {orjson.loads(line)["id"] for line in ledger.read_text().splitlines()}

    wait_for(lambda: ran() >= set(ids), 40, what="jobs run over SASL")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()
    for output in (applied.stdout + applied.stderr, emitted.stdout + emitted.stderr,
                   proc.output()):
        assert DEV_SASL_PASSWORD not in output


def test_plain_mechanism_produces_and_consumes(sasl_broker: SaslBroker,
                                               kafka_config: KafkaConfig) -> None:
    """Rule: SASL/PLAIN works too: records produced with PLAIN credentials from
    `KafkaConfig.client_settings()` are read back by a PLAIN consumer."""
    cfg = sasl_broker.config("PLAIN")
    topic = f"t-sasl-plain-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(cfg.client_settings())
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    try:
        producer = Producer(cfg.client_settings())
        for i in range(5):
            producer.produce(topic, value=f"v{i}".encode())
        assert producer.flush(30) == 0
        consumer = Consumer({**cfg.client_settings(), "group.id": f"{topic}-g",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        got: list[bytes | None] = []
        deadline = time.monotonic() + 30
        try:
            while len(got) < 5 and time.monotonic() < deadline:
                got += [m.value() for m in consumer.consume(10, 0.5) if m.error() is None]
        finally:
            consumer.close()
        assert got == [f"v{i}".encode() for i in range(5)]
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)


@pytest.mark.parametrize(("mechanism", "args"), [
    ("SCRAM-SHA-256", ("worker", APP)),
    ("PLAIN", ("topics", "apply", "--timeout", "5")),
    ("SCRAM-SHA-512", ("emit", "task", "--json", '{"id": "x"}', "--connect-timeout", "5")),
], ids=["worker", "topics-apply", "emit"])
def test_wrong_password_fails_with_one_clear_line(sasl_broker: SaslBroker, mechanism: str,
                                                  args: tuple[str, ...],
                                                  kafka_config: KafkaConfig) -> None:
    """Rule: with a wrong SASL password every client-creating command (worker: consumer; topics:
    admin; emit: producer) exits 4 within a bounded time with one error line that says the
    broker refused the authentication: no traceback, and the password is never printed."""
    bad = "not-the-password-42"
    env = {**sasl_broker.cli_env(mechanism, bad), "STREAMJOBS_METRICS_PORT": "0",
           "STREAMJOBS_LOG_LEVEL": "warning", "STREAMJOBS_SCHEMAS": str(SCHEMAS)}
    started = time.monotonic()
    out = _cli(*args, env=env, timeout=90)
    elapsed = time.monotonic() - started
    assert out.returncode == 4, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    assert "refused" in errors[0] and "authentication" in errors[0].lower(), errors[0]
    assert f"user {DEV_SASL_USER!r} ({mechanism})" in errors[0]
    assert "Traceback" not in out.stderr
    assert bad not in out.stderr + out.stdout
    assert elapsed < 30
