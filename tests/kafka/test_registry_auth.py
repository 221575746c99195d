"""Registry basic auth and TLS against a real registry: Apicurio Registry started once for this
module by `streamjobs dev registry up --registry-tls --registry-auth USER:PASSWORD`, serving
HTTPS only (certificate from the dev CA) and checking basic credentials itself (Quarkus' embedded
user store, one of Apicurio's authentication mechanisms). Registration, emit and a worker go
through it with the settings; a wrong password, missing credentials and a CA that does not
verify the registry each give one error line and exit 4."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from streamjobs import Catalogue, KafkaConfig, Producer, RegistryConfig
from streamjobs._dev.certs import make_certs
from streamjobs._dev.registry import find_java
from tests.conftest import BOOTSTRAP, ROOT, SpawnCli, streamjobs_exe, wait_for
from tests.kafka.jobs_catalogue import read
from tests.ports import free_port_block

SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "registry_schemas"
APP = "tests.apps.registry_jobs:app"
USER, PASSWORD = "jobs-bot", "Reg-pw-7f3a"
WRONG = "not-the-password-42"


@dataclass
class Secured:
    url: str
    ca: str
    port: int
    dev_dir: Path
    pid: int
    up_stdout: str
    prefix: str

    @property
    def topic(self) -> str:
        return f"{self.prefix}orders"

    def env(self, *, password: str | None = PASSWORD, ca: str | None = None,
            **extra: str) -> dict[str, str]:
        env = {"STREAMJOBS_TOPIC_PREFIX": self.prefix, "STREAMJOBS_METRICS_PORT": "0",
               "STREAMJOBS_LOG_LEVEL": "warning", "STREAMJOBS_REGISTRY_URL": self.url,
               "STREAMJOBS_REGISTRY_CA_LOCATION": ca or self.ca, **extra}
        if password is not None:
            env |= {"STREAMJOBS_REGISTRY_USERNAME": USER, "STREAMJOBS_REGISTRY_PASSWORD": password}
        return env


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP, **env}
    for var in ("STREAMJOBS_REGISTRY_USERNAME", "STREAMJOBS_REGISTRY_PASSWORD",
                "STREAMJOBS_REGISTRY_CA_LOCATION"):
        if var not in env:
            full.pop(var, None)
    return subprocess.run([*streamjobs_exe(), *args], env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=str(ROOT))


@pytest.fixture(scope="module")
def secured(kafka_config: KafkaConfig,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    port = free_port_block(1)
    dev_dir = tmp_path_factory.mktemp("secured-registry")
    dev_env = {"STREAMJOBS_DEV_DIR": str(dev_dir)}
    up = _cli("dev", "registry", "up", "--registry-port", str(port), "--registry-tls",
              "--registry-auth", f"{USER}:{PASSWORD}", "--timeout", "180", env=dev_env,
              timeout=300)
    try:
        if up.returncode != 0:
            pytest.fail(f"the secured registry could not start: {up.stdout}{up.stderr}")
        exports = dict(re.findall(r"^export (\w+)=(\S+)", up.stdout, re.M))
        state = json.loads((dev_dir / f"registry-{port}" / "state.json").read_text())
        world = Secured(exports["STREAMJOBS_REGISTRY_URL"],
                        exports["STREAMJOBS_REGISTRY_CA_LOCATION"], port, dev_dir,
                        state["pid"], up.stdout, f"t-regauth-{uuid.uuid4().hex[:8]}.")
        applied = _cli("topics", "apply", "--schemas", str(SCHEMAS), "--json", env=world.env())
        assert applied.returncode == 0, applied.stdout + applied.stderr
        yield world
    finally:
        _cli("dev", "registry", "down", "--registry-port", str(port), env=dev_env)
        admin = AdminClient(kafka_config.client_settings())
        mine = [t for t in admin.list_topics(timeout=10).topics
                if "world" in locals() and t.startswith(world.prefix)]
        for fut in (admin.delete_topics(mine).values() if mine else ()):
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real CA made the same way as the registry's, that did not sign its certificate."""
    return str(make_certs(tmp_path_factory.mktemp("other-ca"), find_java()).ca_pem)


def _status(url: str, *, ca: str | None, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(f"{url}/subjects")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _confluent(world: Secured) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": world.url, "ssl.ca.location": world.ca,
                                 "basic.auth.user.info": f"{USER}:{PASSWORD}"})


def _one_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 4, out.stdout + out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert PASSWORD not in out.stdout + out.stderr and WRONG not in out.stdout + out.stderr
    return errors[0]


def test_dev_registry_serves_https_only_and_checks_basic_auth_itself(secured: Secured) -> None:
    """Rule: `dev registry up --registry-tls --registry-auth` starts Apicurio serving HTTPS only
    on the port with a certificate our dev CA signed for 127.0.0.1, and the registry itself
    refuses anonymous and wrong-password requests (401) and lets the configured user in; the
    password is on no command line (`ps`) and in no output, only in an owner-only file."""
    assert secured.url == f"https://127.0.0.1:{secured.port}/apis/ccompat/v7"
    assert f"export STREAMJOBS_REGISTRY_USERNAME={USER}" in secured.up_stdout
    assert PASSWORD not in secured.up_stdout
    assert _status(secured.url, ca=secured.ca) == 401
    assert _status(secured.url, ca=secured.ca, auth=(USER, WRONG)) == 401
    assert _status(secured.url, ca=secured.ca, auth=(USER, PASSWORD)) == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _status(secured.url, ca=None, auth=(USER, PASSWORD))
    with pytest.raises(OSError):  # no plain-HTTP listener on the port
        _status(secured.url.replace("https://", "http://"), ca=None, auth=(USER, PASSWORD))
    log = (secured.dev_dir / f"registry-{secured.port}" / "registry.log").read_text()
    listening = re.search(r"Listening on: (\S+)\. Management", log)
    assert listening is not None and listening.group(1) == f"https://127.0.0.1:{secured.port}"
    cmdline = Path(f"/proc/{secured.pid}/cmdline").read_bytes().decode(errors="replace")
    assert "java" in cmdline and PASSWORD not in cmdline
    props = secured.dev_dir / f"registry-{secured.port}" / "security.properties"
    assert props.stat().st_mode & 0o077 == 0
    status = _cli("dev", "registry", "status", "--registry-port", str(secured.port), "--json",
                  env={"STREAMJOBS_DEV_DIR": str(secured.dev_dir)})
    info = json.loads(status.stdout)
    assert (info["up"], info["url"], info["ca_location"], info["username"]) == (
        True, secured.url, secured.ca, USER)


def test_registration_emit_and_worker_over_tls_with_basic_auth(
        secured: Secured, kafka_config: KafkaConfig, spawn_cli: SpawnCli,
        tmp_path: Path) -> None:
    """Rule: with STREAMJOBS_REGISTRY_URL/CA_LOCATION/USERNAME/PASSWORD every part of registry
    framing works through the secured registry: `topics apply` registered v1 and v2 (read back
    by confluent-kafka's client with the same credentials and CA), `emit` and the Python
    Producer write the registered id, and a worker resolves it and runs both jobs."""
    client = _confluent(secured)
    subject = f"{secured.topic}-value"
    assert client.get_versions(subject) == [1, 2]
    current_id = client.get_version(subject, 2).schema_id
    emitted = _cli("emit", "order", "--json", '{"id": "cli", "amount": 1}', "--schemas",
                   str(SCHEMAS), env=secured.env())
    assert emitted.returncode == 0, emitted.stderr
    config = RegistryConfig(secured.url, username=USER, password=PASSWORD, ca_location=secured.ca)
    producer = Producer(Catalogue.load(SCHEMAS, topic_prefix=secured.prefix), kafka_config,
                        registry=config)
    try:
        producer.emit("order", {"id": "api", "amount": 2, "note": "py"})
        producer.flush(10)
    finally:
        producer.close()
    for record in read(kafka_config, secured.topic, 2):
        value = record.value()
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == current_id
    ledger = tmp_path / "ledger.jsonl"
    worker = spawn_cli("worker", APP, env=secured.env(
        STREAMJOBS_TEST_LEDGER=str(ledger), STREAMJOBS_GROUP_ID=f"{secured.prefix}ok"))
    wait_for(lambda: ledger.exists() and len(ledger.read_text().splitlines()) >= 2, timeout=60,
             what="2 jobs run through the secured registry")
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output()
    runs: dict[str, Any] = {json.loads(x)["payload"]["id"]: json.loads(x)
                            for x in ledger.read_text().splitlines()}
    assert runs["cli"]["payload"] == {"id": "cli", "amount": 1, "note": ""}
    assert runs["api"]["payload"] == {"id": "api", "amount": 2, "note": "py"}


@pytest.mark.parametrize("args", [
    ("emit", "order", "--json", '{"id": "x", "amount": 1}', "--schemas", str(SCHEMAS)),
    ("schemas", "register", "--schemas", str(SCHEMAS)),
    ("worker", APP),
], ids=["emit", "schemas-register", "worker"])
def test_wrong_password_is_one_line_and_exit_4(secured: Secured, args: tuple[str, ...],
                                               tmp_path: Path) -> None:
    """Rule: a registry that refuses the password makes emit, registration and the worker
    (at start, before any record could be dead-lettered) exit 4 with one line naming the user
    and the settings to check; no traceback, no password. Without credentials the line says
    the registry requires them."""
    ledger = tmp_path / "ledger.jsonl"
    env = secured.env(password=WRONG, STREAMJOBS_TEST_LEDGER=str(ledger),
                      STREAMJOBS_GROUP_ID=f"{secured.prefix}wrong")
    line = _one_error(_cli(*args, env=env, timeout=90))
    assert f"HTTP 401: the registry refused the credentials of user {USER!r}" in line, line
    assert "--registry-password" in line
    missing = _one_error(_cli(*args, env=secured.env(password=None), timeout=90))
    assert "HTTP 401: the registry requires credentials" in missing, missing
    assert not ledger.exists()


@pytest.mark.parametrize("args", [
    ("emit", "order", "--json", '{"id": "x", "amount": 1}', "--schemas", str(SCHEMAS)),
    ("worker", APP),
], ids=["emit", "worker"])
def test_a_ca_that_does_not_verify_the_registry_is_one_tls_line_and_exit_4(
        secured: Secured, other_ca: str, args: tuple[str, ...]) -> None:
    """Rule: trusting another CA (a real one, made the same way) than the registry's makes emit
    and the worker exit 4 with one line naming the TLS certificate failure and
    --registry-ca-location; no traceback, no password."""
    line = _one_error(_cli(*args, env=secured.env(ca=other_ca), timeout=90))
    assert "TLS refused" in line and "certificate verify failed" in line, line
    assert other_ca in line and "--registry-ca-location" in line

