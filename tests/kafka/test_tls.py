"""TLS end to end: the recommended production setting (SASL_SSL with SCRAM-SHA-512 and a
private CA) against a real broker started with `streamjobs dev up --tls` (its own ports and
state directory; the shared broker is never touched). The CA reaches every client through
STREAMJOBS_SSL_CA_LOCATION, librdkafka verifies the broker's certificate and host name, kcat
(a real peer) talks to the same listener, and a client that does not trust the CA fails fast
with one clear line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from streamjobs._config import KafkaConfig
from streamjobs._dev.broker import DEV_SASL_PASSWORD, DEV_SASL_USER
from tests.conftest import ROOT, SpawnCli, streamjobs_exe, wait_for
from tests.ports import free_port_block

from .test_sasl import _cli
from .worker_support import APP, SCHEMAS


@dataclass(frozen=True)
class TlsBroker:
    port: int
    env: dict[str, str]  # STREAMJOBS_DEV_DIR of this broker
    bootstrap: str  # the SASL_SSL listener
    ca: Path

    def cli_env(self, *, ca: bool = True) -> dict[str, str]:
        env = {"STREAMJOBS_BOOTSTRAP_SERVERS": self.bootstrap,
               "STREAMJOBS_SECURITY_PROTOCOL": "SASL_SSL",
               "STREAMJOBS_SASL_MECHANISM": "SCRAM-SHA-512",
               "STREAMJOBS_SASL_USERNAME": DEV_SASL_USER,
               "STREAMJOBS_SASL_PASSWORD": DEV_SASL_PASSWORD,
               "STREAMJOBS_SCHEMAS": str(SCHEMAS)}
        if ca:
            env["STREAMJOBS_SSL_CA_LOCATION"] = str(self.ca)
        return env


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    port = free_port_block(3)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path_factory.mktemp("tls-dev"))}
    up = _cli("dev", "up", "--port", str(port), "--tls", env=env)
    try:
        assert up.returncode == 0, up.stderr
        assert f"SASL_SSL on 127.0.0.1:{port + 2}" in up.stdout, up.stdout
        ca_lines = [line for line in up.stdout.splitlines() if line.startswith("TLS CA")]
        assert len(ca_lines) == 1, up.stdout
        ca = Path(ca_lines[0].split(": ", 1)[1].split(" ")[0])
        yield TlsBroker(port, env, f"127.0.0.1:{port + 2}", ca)
    finally:
        down = _cli("dev", "down", "--port", str(port), "--wipe", env=env)
        assert down.returncode == 0, down.stderr


def test_status_names_the_listener_and_the_ca(tls_broker: TlsBroker,
                                              kafka_config: KafkaConfig) -> None:
    """Rule: `dev up --tls` makes the extra listener SASL_SSL and reports the CA file clients
    must trust (`dev status --json`); the file is a PEM certificate of a CA."""
    out = _cli("dev", "status", "--port", str(tls_broker.port), "--json", env=tls_broker.env)
    assert out.returncode == 0, out.stderr
    status = orjson.loads(out.stdout)
    assert status["sasl_protocol"] == "SASL_SSL"
    assert status["sasl_bootstrap"] == tls_broker.bootstrap
    assert status["ca_location"] == str(tls_broker.ca)
    pem = tls_broker.ca.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem.count("BEGIN") == 1


def test_kcat_lists_the_cluster_over_sasl_ssl(tls_broker: TlsBroker,
                                              kafka_config: KafkaConfig) -> None:
    """Rule: a real peer (Debian's kcat, its own librdkafka build) verifies the broker's
    certificate against the dev CA and authenticates on the same listener. PLAIN, because that
    kcat's librdkafka 2.0.2 predates the SCRAM nonce fix (librdkafka 2.6.1) Kafka 4.x needs:
    its SCRAM is refused, which the second call shows (docs/security.md)."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing (apt-get install kcat; .ci/run installs it)"

    def kcat_list(mechanism: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kcat, "-b", tls_broker.bootstrap, "-L", "-J", "-m", "20",
             "-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanisms={mechanism}",
             "-X", f"sasl.username={DEV_SASL_USER}", "-X", f"sasl.password={DEV_SASL_PASSWORD}",
             "-X", f"ssl.ca.location={tls_broker.ca}"],
            capture_output=True, text=True, timeout=60)

    res = kcat_list("PLAIN")
    assert res.returncode == 0, res.stderr
    brokers = orjson.loads(res.stdout)["brokers"]
    assert [b["name"] for b in brokers] == [tls_broker.bootstrap]
    version = subprocess.run([kcat, "-V"], capture_output=True, text=True).stdout
    if "librdkafka 2.0." in version:  # Debian bookworm's: the handshake passes, SCRAM does not
        scram = kcat_list("SCRAM-SHA-512")
        assert scram.returncode != 0
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in scram.stderr


def test_topics_emit_and_worker_run_over_tls(tls_broker: TlsBroker, spawn_cli: SpawnCli,
                                             tmp_path: Path,
                                             kafka_config: KafkaConfig) -> None:
    """Rule: with SASL_SSL settings and the CA in the STREAMJOBS_* variables, `topics apply`
    (admin client), `emit` (producer) and a worker process (consumer, and the producer of its
    retry/DLQ records) all work over TLS, and every job runs."""
    env = tls_broker.cli_env()
    applied = _cli("topics", "apply", env=env, timeout=60)
    assert applied.returncode == 0, applied.stderr
    ids = [f"tls-{i}" for i in range(6)]
    jobs = "\n".join(orjson.dumps({"type": "task", "payload": {"id": i, "key": i}}).decode()
                     for i in ids)
    emitted = subprocess.run([*streamjobs_exe(), "emit", "--file", "-"], input=jobs,
                             env={**os.environ, **env}, cwd=str(ROOT), capture_output=True,
                             text=True, timeout=60)
    assert emitted.returncode == 0, emitted.stderr
    ledger = tmp_path / "ledger.jsonl"
    proc = spawn_cli("worker", APP, "--job-types", "task", env={
        **env, "STREAMJOBS_TEST_LEDGER": str(ledger),
        "STREAMJOBS_GROUP_ID": f"tls-{uuid.uuid4().hex[:8]}", "STREAMJOBS_METRICS_PORT": "0",
        "STREAMJOBS_TOPIC_PREFIX": ""})

    def ran() -> set[str]:
        if not ledger.exists():
            return set()
        return {orjson.loads(line)["id"] for line in ledger.read_text().splitlines()}

    wait_for(lambda: ran() >= set(ids), 40, what="jobs run over TLS")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()


@pytest.mark.parametrize("args", [
    ("topics", "apply", "--timeout", "5"),
    ("emit", "task", "--json", '{"id": "x"}', "--connect-timeout", "5"),
], ids=["topics-apply", "emit"])
def test_a_client_without_the_ca_fails_with_one_clear_line(tls_broker: TlsBroker,
                                                           args: tuple[str, ...],
                                                           kafka_config: KafkaConfig) -> None:
    """Rule: a client that does not trust the broker's CA (no STREAMJOBS_SSL_CA_LOCATION, so
    the system bundle) is refused by its own certificate check: exit 4, one error line naming
    the TLS failure, no traceback, no password, within a bounded time."""
    env = {**tls_broker.cli_env(ca=False), "STREAMJOBS_LOG_LEVEL": "warning"}
    out = _cli(*args, env=env, timeout=90)
    assert out.returncode == 4, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    assert "refused" in errors[0] and "certificate verify failed" in errors[0], errors[0]
    assert "Traceback" not in out.stderr
    assert DEV_SASL_PASSWORD not in out.stderr + out.stdout
