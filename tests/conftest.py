"""Shared fixtures.

Every Kafka test gets its own topics and consumer group (``unique``), so tests never interfere
and run in any order. Under ``CI=true`` a missing broker is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs._config import KafkaConfig

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = os.environ.get("STREAMJOBS_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def _broker_reachable(timeout: float = 5.0) -> str | None:
    try:
        AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(timeout=timeout)
    except Exception as exc:
        return str(exc)
    return None


_broker_error: list[str | None] = []


@pytest.fixture(scope="session")
def kafka_config() -> KafkaConfig:
    """Connection to the real local broker; fails (CI) or skips (dev) when it is missing."""
    if not _broker_error:
        _broker_error.append(_broker_reachable())
    err = _broker_error[0]
    if err is not None:
        msg = f"Kafka broker at {BOOTSTRAP} unreachable ({err}); run `streamjobs dev up`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return KafkaConfig(bootstrap_servers=BOOTSTRAP)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> str:
    """A name prefix no other test uses: ``t-<test name>-<random>``."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(kafka_config: KafkaConfig) -> AdminClient:
    return AdminClient(kafka_config.client_settings())


MakeTopic = Callable[..., str]


def wait_visible(admin: AdminClient, names: list[str], timeout: float = 30) -> None:
    """Waits until metadata shows every topic with a leader for each partition: a topic just
    created is not at once visible to every client of a loaded broker."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        md = admin.list_topics(timeout=10)
        for name in list(pending):
            t = md.topics.get(name)
            if t is not None and t.error is None and t.partitions and all(
                    p.leader >= 0 for p in t.partitions.values()):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                pytest.fail(f"topics not visible after {timeout}s: {sorted(pending)}")
            time.sleep(0.1)


@pytest.fixture
def make_topic(admin: AdminClient, unique: str) -> Iterator[MakeTopic]:
    """``make_topic(suffix, partitions=3, config=None) -> name``; deleted after the test."""
    created: list[str] = []

    def make(suffix: str = "jobs", partitions: int = 3, config: dict[str, str] | None = None,
             name: str | None = None) -> str:
        topic = name or f"{unique}.{suffix}"
        fut = admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])[topic]
        fut.result(timeout=30)
        created.append(topic)
        wait_visible(admin, [topic])
        return topic

    yield make
    if created:
        for fut in admin.delete_topics(created).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def streamjobs_exe() -> list[str]:
    exe = shutil.which("streamjobs", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "streamjobs"]


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_cli() -> RunCli:
    """Runs ``streamjobs ARGS...`` as a real subprocess; returns the CompletedProcess."""

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 120,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP, **(env or {})}
        return subprocess.run([*streamjobs_exe(), *args], env=full_env, input=input,
                              capture_output=True, text=True, timeout=timeout,
                              cwd=str(cwd or ROOT))

    return run


class Proc:
    """A long-running streamjobs subprocess (a worker, say) that tests can signal and stop."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen([*streamjobs_exe(), *args], env=env, cwd=str(cwd),
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=30)
        self._log.close()


SpawnCli = Callable[..., Proc]


@pytest.fixture
def spawn_cli(tmp_path: Path) -> Iterator[SpawnCli]:
    """Starts ``streamjobs ARGS...`` in the background (e.g. a worker); killed after the test."""
    procs: list[Proc] = []

    def spawn(*args: str, env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> Proc:
        full_env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP,
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        log = tmp_path / f"proc-{len(procs)}.log"
        p = Proc(list(args), full_env, Path(cwd or ROOT), log)
        procs.append(p)
        return p

    yield spawn
    for p in procs:
        p.stop()


def wait_for(pred: Callable[[], object], timeout: float = 30, interval: float = 0.1,
             what: str = "condition") -> object:
    """Polls ``pred`` until truthy; fails the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/kafka needs the broker.
    for item in items:
        if "/tests/kafka/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kafka)
