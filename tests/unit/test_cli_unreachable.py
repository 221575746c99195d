"""A broker that does not answer costs one line, from every Kafka command and from the Python API.

Runs each command as a real subprocess against a port where nothing listens (bound, never
listening: connections are refused); no broker is needed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from streamjobs.cli import main
from tests.conftest import ROOT, streamjobs_exe

TIMEOUT = 2.0
MARGIN = 8.0  # interpreter start-up and imports on a loaded 2-core machine

# The Kafka commands of this release; commands added later are found and run too.
KNOWN = {"emit", "topics plan", "topics apply", "worker", "dlq stats", "dlq list", "dlq show",
         "dlq reprocess", "replay offsets", "replay range"}


def _kafka_commands() -> dict[str, list[str]]:
    """Every command with the shared connection options (``--connect-timeout``), with values
    for what click requires: the broker check runs before the command looks at them."""
    found: dict[str, list[str]] = {}

    def walk(group: click.Group, ctx: click.Context, path: str) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None
            full = f"{path} {name}".strip()
            if isinstance(cmd, click.Group):
                walk(cmd, click.Context(cmd, info_name=name, parent=ctx), full)
            elif any("--connect-timeout" in p.opts for p in cmd.params):
                found[full] = _required(cmd)

    walk(main, click.Context(main, info_name="streamjobs"), "")
    return found


def _required(cmd: click.Command) -> list[str]:
    args: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        if isinstance(p.type, click.Choice):
            value = str(p.type.choices[0])
        elif isinstance(p.type, click.types.IntParamType | click.types.FloatParamType):
            value = "0"
        else:
            value = "x:y" if isinstance(p, click.Argument) else "x"
        args += [value] if isinstance(p, click.Argument) else [p.opts[0], value]
    return args


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound and never listening: every connect is refused
        yield s.getsockname()[1]


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMJOBS_")}
    return {**env, "STREAMJOBS_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "STREAMJOBS_CONNECT_TIMEOUT": str(TIMEOUT)}


def test_every_kafka_command_has_the_shared_options() -> None:
    """Rule: every command that talks to Kafka has --connect-timeout (from kafka_options)."""
    assert sorted(KNOWN - set(_kafka_commands())) == []


def test_each_command_fails_in_one_line_within_the_connect_timeout(closed_port: int) -> None:
    """Rule: against a port where no broker answers, every Kafka command writes exactly one
    stderr line (naming the address and what to check), nothing else, and exits 4 within
    --connect-timeout plus start-up time. The commands run at once, each timed on its own."""
    env = _env(closed_port)
    procs = {}
    for name, args in _kafka_commands().items():
        procs[name] = (time.monotonic(), subprocess.Popen(
            [*streamjobs_exe(), *name.split(), *args], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    problems = []
    for name, (started, proc) in procs.items():
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - started
        lines = err.splitlines()
        expected = (f"error: no Kafka broker answered at 127.0.0.1:{closed_port} within "
                    f"{TIMEOUT:g}s; check --bootstrap-servers / STREAMJOBS_BOOTSTRAP_SERVERS "
                    "and that the broker is up")
        if proc.returncode != 4 or lines != [expected] or out or elapsed > TIMEOUT + MARGIN:
            problems.append((name, proc.returncode, round(elapsed, 1), lines[:3], out[:200]))
    assert problems == []


def test_connect_timeout_is_checked() -> None:
    """Rule: --connect-timeout must be positive: exit 2 with one line naming the option."""
    r = subprocess.run([*streamjobs_exe(), "topics", "plan", "--connect-timeout", "0"],
                       env=_env(1), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["error: invalid option connect-timeout: must be > 0"]


def test_debug_shows_librdkafka_lines_rate_limited(closed_port: int) -> None:
    """Rule: --log-level debug shows librdkafka's own lines (logger streamjobs.kafka), a few
    per kind and client, not one per reconnect attempt; the last line is still the error."""
    r = subprocess.run([*streamjobs_exe(), "topics", "plan", "--log-level", "debug"],
                       env=_env(closed_port), cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    lines = r.stderr.splitlines()
    assert r.returncode == 4
    kafka = [x for x in lines if "streamjobs.kafka" in x]
    assert kafka and all("Connection refused" in x or "ERROR" in x for x in kafka), lines
    assert len(kafka) <= 12, lines  # ~40 reconnects in 2 s without the limit
    assert lines[-1].startswith("error: no Kafka broker answered")


SNIPPET = """
import sys
from streamjobs import BrokerUnavailable, Catalogue, KafkaConfig, Producer
from streamjobs._connection import admin as admin_client
from streamjobs._scan import partitions_of
config = KafkaConfig(bootstrap_servers=sys.argv[1])
try:
    Producer(Catalogue.load(sys.argv[2]), config, connect_timeout=2)
except BrokerUnavailable as exc:
    print("producer:", exc.code)
try:
    partitions_of(admin_client(config), config, "demo.emails", timeout=2)
except BrokerUnavailable as exc:
    print("scan:", exc.code)
from streamjobs._worker import Worker, WorkerSettings
from tests.apps.tasks import app
try:
    Worker(app, WorkerSettings(job_types=("task",), connect_timeout=2), config).run(
        install_signals=False)
except BrokerUnavailable as exc:
    print("worker:", exc.code)
"""


def test_python_api_writes_nothing_to_stderr(closed_port: int, tmp_path: Path) -> None:
    """Rule: a Producer, a scan's admin look-up and a Worker against a closed port raise
    BrokerUnavailable and write nothing to stderr when the application configures no logging."""
    r = subprocess.run([sys.executable, "-c", SNIPPET, f"127.0.0.1:{closed_port}",
                        str(ROOT / "schemas")], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=_env(closed_port))
    assert r.stdout.splitlines() == ["producer: _TRANSPORT", "scan: _TRANSPORT",
                                     "worker: _TRANSPORT"], r.stderr
    assert r.stderr == ""
