"""`streamjobs dev` fails with one clear line, never a traceback, when it cannot run Kafka."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from tests.conftest import RunCli


def _fake_java(tmp_path: Path, version: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2020-01-01\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_one_line_error(out: object, needle: str) -> None:
    rc, err = out.returncode, out.stderr  # type: ignore[attr-defined]
    assert rc == 1, err
    assert needle in err
    assert "Traceback" not in err
    assert err.strip().startswith("error: ")


def test_java_too_old(tmp_path: Path, run_cli: RunCli) -> None:
    """Rule: Java older than 17 is refused with a message naming the version."""
    env = {"JAVA_HOME": str(_fake_java(tmp_path, "11.0.2")),
           "STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    out = run_cli("dev", "up", "--port", str(_free_port()), env=env)
    _assert_one_line_error(out, "Java 17 or newer is required")
    assert "Java 11" in out.stderr


def test_java_missing(tmp_path: Path, run_cli: RunCli) -> None:
    """Rule: no Java at all is reported as such."""
    env = {"JAVA_HOME": str(tmp_path / "nojdk"), "STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    out = run_cli("dev", "up", "--port", str(_free_port()), env=env)
    _assert_one_line_error(out, "`java` was not found")


def test_no_maven_and_no_kafka_home(tmp_path: Path, run_cli: RunCli) -> None:
    """Rule: without cached jars, Maven or KAFKA_HOME there is no way to get Kafka: say so."""
    import os
    import shutil

    java = shutil.which("java")
    assert java, "tests need Java 17+"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "java").symlink_to(os.path.realpath(java))
    env = {"PATH": str(bindir), "STREAMJOBS_CACHE_DIR": str(tmp_path / "cache"),
           "STREAMJOBS_DEV_DIR": str(tmp_path / "state"), "KAFKA_HOME": "", "JAVA_HOME": ""}
    out = run_cli("dev", "up", "--port", str(_free_port()), env=env)
    _assert_one_line_error(out, "neither KAFKA_HOME nor Maven")


def test_bad_kafka_home(tmp_path: Path, run_cli: RunCli) -> None:
    """Rule: a KAFKA_HOME that is not a Kafka distribution is named in the error."""
    env = {"KAFKA_HOME": str(tmp_path), "STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    out = run_cli("dev", "up", "--port", str(_free_port()), env=env)
    _assert_one_line_error(out, "is not an unpacked Apache Kafka distribution")


def test_port_taken(tmp_path: Path, run_cli: RunCli) -> None:
    """Rule: a port held by another process is refused before anything starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = run_cli("dev", "up", "--port", str(port),
                      env={"STREAMJOBS_DEV_DIR": str(tmp_path / "state")})
    _assert_one_line_error(out, f"port {port} on 127.0.0.1 is already taken")


def test_unknown_tool(run_cli: RunCli) -> None:
    """Rule: `dev tool` names the tools it has when asked for another."""
    out = run_cli("dev", "tool", "kafka-nonsense")
    assert out.returncode == 3
    assert "kafka-consumer-groups" in out.stderr


def test_registry_auth_that_a_properties_file_would_misread(tmp_path: Path,
                                                           run_cli: RunCli) -> None:
    """Rule: `dev registry up --registry-auth` takes USER:PASSWORD without blanks, '\\' or '$'
    (they reach Quarkus through a .properties file): anything else is one line, exit 1, before
    Java or Maven is looked for, and the password is not echoed."""
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path / "state"), "JAVA_HOME": str(tmp_path / "none")}
    for auth in ("no-colon", "user:", ":pw", "us er:pw", "user:p$w", "a.b:pw"):
        out = run_cli("dev", "registry", "up", "--registry-port", str(_free_port()),
                      "--registry-auth", auth, env=env)
        _assert_one_line_error(out, "registry auth must be USER:PASSWORD")
        assert "p$w" not in out.stderr
