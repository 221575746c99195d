"""One local KRaft Kafka node (broker + controller in one JVM): format, start, wait, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from confluent_kafka.admin import AdminClient

from ..errors import DevBrokerError
from .jars import KAFKA_VERSION, check_java, resolve_classpath

__all__ = ["BrokerState", "DevBroker", "state_root"]

_HEAP = "-Xms256m", "-Xmx768m"


def state_root() -> Path:
    base = os.environ.get("STREAMJOBS_DEV_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "streamjobs")
    return Path(base)


@dataclass(frozen=True)
class BrokerState:
    pid: int
    bootstrap: str
    port: int
    controller_port: int
    data_dir: str
    log_file: str
    kafka_version: str
    started_at: float


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap, "log_level": 0}).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


class DevBroker:
    """The local broker listening on ``127.0.0.1:port``; its files live in one directory."""

    def __init__(self, port: int = 9092, *, root: Path | None = None) -> None:
        if not 1 <= port <= 65534:
            raise DevBrokerError(f"port {port} is out of range")
        self.port = port
        self.controller_port = port + 1
        self.home = (root or state_root()) / f"broker-{port}"
        self.data_dir = self.home / "data"
        self.log_file = self.home / "broker.log"
        self.state_file = self.home / "state.json"
        self.config_file = self.home / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- state -------------------------------------------------------------------------------
    def state(self) -> BrokerState | None:
        """The recorded state if its process is still alive, else None."""
        try:
            data = json.loads(self.state_file.read_text())
            state = BrokerState(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if _alive(state.pid) else None

    def is_up(self) -> bool:
        return self.state() is not None and answers_metadata(self.bootstrap)

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> tuple[BrokerState, bool]:
        """Starts the broker unless it is up. Returns (state, started_now)."""
        current = self.state()
        if current is not None:
            if answers_metadata(self.bootstrap, timeout=5):
                return current, False
            raise DevBrokerError(f"broker pid {current.pid} is running but does not answer on "
                                 f"{self.bootstrap}; try `streamjobs dev down`")
        for p in (self.port, self.controller_port):
            if not _port_free(p):
                raise DevBrokerError(f"port {p} on 127.0.0.1 is already taken by another "
                                     "process; choose another with --port")
        java = check_java()
        classpath = resolve_classpath()
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._server_properties())
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, classpath)
        state = self._start(java, classpath)
        self._wait(state, timeout)
        return state, True

    def down(self, *, wipe: bool = False, grace: float = 20.0) -> bool:
        """Stops the broker (SIGTERM, SIGKILL after ``grace``). Returns whether one was running."""
        state = self.state()
        if state is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(state.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGKILL)
                while _alive(state.pid):
                    time.sleep(0.05)
        self.state_file.unlink(missing_ok=True)
        if wipe:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)
        return state is not None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------
    def _server_properties(self) -> str:
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                         f"CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # Development settings: topics are created on purpose (`topics apply`), one replica.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests delete many topics; do it promptly.
            "delete.topic.enable": "true",
            "log.segment.delete.delay.ms": "1000",
            "file.delete.delay.ms": "1000",
            # Allow short session timeouts in tests of rebalances and frozen workers.
            "group.consumer.min.session.timeout.ms": "3000",
            "group.consumer.heartbeat.interval.ms": "1000",
            "group.consumer.min.heartbeat.interval.ms": "1000",
            "group.min.session.timeout.ms": "3000",
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _format(self, java: str, classpath: str) -> None:
        cluster_id = _random_cluster_id()
        proc = subprocess.run(
            [java, *_log_opts("tools-log4j2.properties"), "-cp", classpath,
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file)],
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise DevBrokerError("formatting the broker storage failed: " + " | ".join(tail))

    def _start(self, java: str, classpath: str) -> BrokerState:
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [java, *_HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 *_log_opts("log4j2.properties"), "-cp", classpath, "kafka.Kafka",
                 str(self.config_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # outlives the CLI process
        finally:
            log.close()
        state = BrokerState(pid=proc.pid, bootstrap=self.bootstrap, port=self.port,
                            controller_port=self.controller_port, data_dir=str(self.data_dir),
                            log_file=str(self.log_file), kafka_version=KAFKA_VERSION,
                            started_at=time.time())
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        return state

    def _wait(self, state: BrokerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(state.pid):
                self.state_file.unlink(missing_ok=True)
                raise DevBrokerError("the broker exited during start-up; last log lines:\n"
                                     + self.log_tail())
            if answers_metadata(self.bootstrap, timeout=1.0):
                return
            time.sleep(0.2)
        self.down()
        raise DevBrokerError(f"the broker did not answer on {self.bootstrap} within "
                             f"{timeout:.0f}s; last log lines:\n" + self.log_tail())


def _log_opts(name: str) -> list[str]:
    path = resources.files("streamjobs.dev") / name
    return [f"-Dlog4j2.configurationFile={path}"]


def _random_cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes, URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
