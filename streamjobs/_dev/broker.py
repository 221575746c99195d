"""Local KRaft Kafka: one node (broker + controller in one JVM) or a small cluster of such nodes.

Node i (1-based) of an N-node cluster based at ``port`` listens for clients on ``port+i-1`` and
for the controller quorum on ``port+N+i-1``, so the single-node default is 9092 + 9093.

With ``sasl=True`` each node also has a ``SASL_PLAINTEXT`` client listener on ``port+2N+i-1``
(9094 for the single-node default) accepting PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for the
development-only user ``DEV_SASL_USER``/``DEV_SASL_PASSWORD``. With ``tls=True`` (which implies
``sasl``) that listener is ``SASL_SSL`` instead, with a certificate from a development CA
(``certs.py``; clients trust ``<home>/tls/ca.pem``). Brokers and controllers keep talking
PLAINTEXT to each other: the extra listener exists to exercise the clients' settings.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .. import _kafka_log
from .._connection import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from ..errors import DevBrokerError
from .certs import DevCerts, make_certs
from .jars import KAFKA_VERSION, check_java, resolve_classpath

__all__ = ["DEV_SASL_PASSWORD", "DEV_SASL_USER", "SASL_MECHANISMS", "BrokerState", "DevBroker",
           "answers_metadata", "state_root"]

# Development-only credentials of the SASL listener (`dev up --sasl`); never use them elsewhere.
DEV_SASL_USER = "streamjobs"
DEV_SASL_PASSWORD = "streamjobs-secret"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096

_HEAP = {1: ("-Xms256m", "-Xmx768m")}
_SMALL_HEAP = ("-Xms128m", "-Xmx384m")  # per node in a multi-node cluster


def state_root() -> Path:
    base = os.environ.get("STREAMJOBS_DEV_DIR") or os.path.join(
        os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "streamjobs")
    return Path(base)


@dataclass(frozen=True)
class BrokerState:
    pid: int  # first node's pid
    pids: tuple[int, ...]
    bootstrap: str
    port: int
    nodes: int
    data_dir: str
    log_file: str
    kafka_version: str
    started_at: float
    # Defaults keep state files written before SASL and TLS support readable.
    sasl: bool = False
    sasl_bootstrap: str | None = None
    tls: bool = False
    ca_location: str | None = None  # the dev CA (PEM) clients of the SASL_SSL listener trust


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as dead.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _quiet(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A hand-written client conf whose librdkafka lines go to the ``streamjobs.kafka`` logger
    (this module polls brokers that are still starting: each refused connection is a line)."""
    return {**conf, "logger": _kafka_log.FORWARDER, "error_cb": _kafka_log.on_error}


def answers_metadata(bootstrap: str, timeout: float = 2.0) -> bool:
    try:
        AdminClient(_quiet({"bootstrap.servers": bootstrap})).list_topics(timeout=timeout)
    except Exception:
        return False
    return True


class DevBroker:
    """The local broker (or cluster) on ``127.0.0.1``; its files live in one directory."""

    def __init__(self, port: int = 9092, *, nodes: int = 1, root: Path | None = None,
                 sasl: bool = False, tls: bool = False) -> None:
        if not 1 <= nodes <= 5:
            raise DevBrokerError("--nodes must be between 1 and 5")
        if not 1 <= port <= 65535 - (3 if sasl or tls else 2) * nodes:
            raise DevBrokerError(f"port {port} is out of range")
        self.port = port
        self.home = (root or state_root()) / f"broker-{port}"
        self.state_file = self.home / "state.json"
        recorded = self._read_state()
        # A running cluster decides its own size; `status`/`down` need not repeat --nodes.
        self.nodes = recorded.nodes if recorded is not None else nodes
        self.tls = tls or (recorded is not None and recorded.tls)
        self.sasl = sasl or self.tls or (recorded is not None and recorded.sasl)
        self.data_dir = self.home / "data"
        self.log_file = self.home / "broker.log"

    # -- addresses and files -----------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.node_port(i)}" for i in self.node_ids)

    @property
    def node_ids(self) -> range:
        return range(1, self.nodes + 1)

    def node_port(self, node: int) -> int:
        return self.port + node - 1

    def controller_port(self, node: int) -> int:
        return self.port + self.nodes + node - 1

    def sasl_port(self, node: int) -> int:
        return self.port + 2 * self.nodes + node - 1

    @property
    def sasl_protocol(self) -> str:
        return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"

    @property
    def certs(self) -> DevCerts:
        """Where ``tls`` keeps the dev CA and the broker keystore (made by ``up``)."""
        return DevCerts(self.home / "tls" / "ca.pem", self.home / "tls" / "broker.p12")

    @property
    def sasl_bootstrap(self) -> str | None:
        """Addresses of the SASL listeners (``sasl_protocol``), or None without ``sasl``."""
        if not self.sasl:
            return None
        return ",".join(f"127.0.0.1:{self.sasl_port(i)}" for i in self.node_ids)

    def _node_dir(self, node: int) -> Path:
        return self.data_dir if self.nodes == 1 else self.home / f"node-{node}" / "data"

    def _node_log(self, node: int) -> Path:
        return self.log_file if self.nodes == 1 else self.home / f"node-{node}" / "broker.log"

    def _node_config(self, node: int) -> Path:
        return self._node_dir(node).parent / "server.properties"

    # -- state -------------------------------------------------------------------------------
    def _read_state(self) -> BrokerState | None:
        try:
            data = json.loads(self.state_file.read_text())
            data["pids"] = tuple(data["pids"])
            return BrokerState(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _write_state(self, pids: tuple[int, ...]) -> BrokerState:
        state = BrokerState(pid=pids[0], pids=pids, bootstrap=self.bootstrap, port=self.port,
                            nodes=self.nodes, data_dir=str(self.data_dir),
                            log_file=str(self._node_log(1)), kafka_version=KAFKA_VERSION,
                            started_at=time.time(), sasl=self.sasl,
                            sasl_bootstrap=self.sasl_bootstrap, tls=self.tls,
                            ca_location=str(self.certs.ca_pem) if self.tls else None)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        return state

    def state(self) -> BrokerState | None:
        """The recorded state if any of its nodes is still alive, else None."""
        state = self._read_state()
        if state is None or not any(pid_alive(p) for p in state.pids):
            return None
        return state

    def is_up(self) -> bool:
        return self.state() is not None and answers_metadata(self.bootstrap)

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> tuple[BrokerState, bool]:
        """Starts the broker unless it is up. Returns (state, started_now)."""
        current = self.state()
        if current is not None:
            if self.sasl and not current.sasl:
                raise DevBrokerError(f"the broker on {self.bootstrap} runs without SASL; stop it "
                                     "with `streamjobs dev down` and start it again with --sasl")
            if self.tls and not current.tls:
                raise DevBrokerError(f"the broker on {self.bootstrap} runs without TLS; stop it "
                                     "with `streamjobs dev down` and start it again with --tls")
            if answers_metadata(self.bootstrap, timeout=5):
                return current, False
            raise DevBrokerError(f"broker pid {current.pid} is running but does not answer on "
                                 f"{self.bootstrap}; try `streamjobs dev down`")
        # Java and the jars first: they are the more fundamental problems to report.
        java = check_java()
        classpath = resolve_classpath()
        for node in self.node_ids:
            ports = [self.node_port(node), self.controller_port(node)]
            if self.sasl:
                ports.append(self.sasl_port(node))
            for p in ports:
                if not port_free(p):
                    raise DevBrokerError(f"port {p} on 127.0.0.1 is already taken by another "
                                         "process; choose another with --port")
        self.home.mkdir(parents=True, exist_ok=True)
        if self.tls:
            make_certs(self.certs.ca_pem.parent, java)
        cluster_id = _random_cluster_id()
        for node in self.node_ids:
            self._node_dir(node).mkdir(parents=True, exist_ok=True)
            self._node_config(node).write_text(self._server_properties(node))
            if not (self._node_dir(node) / "meta.properties").exists():
                self._format(java, classpath, node, cluster_id)
        pids = tuple(self._start_node(java, classpath, node) for node in self.node_ids)
        state = self._write_state(pids)
        deadline = time.monotonic() + timeout
        self._wait(state, timeout)
        if self.sasl:
            self._add_sasl_user(max(1.0, deadline - time.monotonic()))
        return state, True

    def kill_node(self, node: int, sig: int = signal.SIGKILL) -> None:
        """Fault injection: signal one node's JVM (SIGKILL by default)."""
        state = self._require_state()
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pids[node - 1], sig)
        if sig == signal.SIGKILL:
            while pid_alive(state.pids[node - 1]):
                time.sleep(0.05)

    def restart_node(self, node: int, timeout: float = 90.0) -> None:
        """Starts a node that was killed again, with its data, and waits until it answers."""
        state = self._require_state()
        if pid_alive(state.pids[node - 1]):
            raise DevBrokerError(f"node {node} is still running")
        pids = list(state.pids)
        pids[node - 1] = self._start_node(check_java(), resolve_classpath(), node)
        self._write_state(tuple(pids))
        deadline = time.monotonic() + timeout
        addr = f"127.0.0.1:{self.node_port(node)}"
        while not answers_metadata(addr, timeout=1.0):
            if time.monotonic() > deadline:
                raise DevBrokerError(f"node {node} did not come back on {addr}")
            time.sleep(0.2)

    def down(self, *, wipe: bool = False, grace: float = 20.0) -> bool:
        """Stops every node (SIGTERM, SIGKILL after ``grace``). Returns whether any ran."""
        state = self._read_state()
        running = [p for p in (state.pids if state else ()) if pid_alive(p)]
        for pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(pid_alive(p) for p in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in running:
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        while any(pid_alive(p) for p in running):
            time.sleep(0.05)
        self.state_file.unlink(missing_ok=True)
        if wipe:
            shutil.rmtree(self.home, ignore_errors=True)
        return bool(running)

    def log_tail(self, lines: int = 40, node: int = 1) -> str:
        return "\n".join(self._log_lines(node)[-lines:])

    def log_errors(self, lines: int = 5, node: int = 1) -> str:
        """The first ERROR/FATAL lines of a node's log: the cause of a failed start-up, which
        the tail (all shutdown chatter) hides."""
        found = [ln for ln in self._log_lines(node) if " ERROR " in ln or " FATAL " in ln]
        return "\n".join(found[:lines]) or "(none)"

    def _log_lines(self, node: int) -> list[str]:
        try:
            return self._node_log(node).read_text(errors="replace").splitlines()
        except OSError:
            return []

    # -- internals ---------------------------------------------------------------------------
    def _require_state(self) -> BrokerState:
        state = self._read_state()
        if state is None:
            raise DevBrokerError("the broker is not running")
        return state

    def _server_properties(self, node: int) -> str:
        voters = ",".join(f"{i}@127.0.0.1:{self.controller_port(i)}" for i in self.node_ids)
        rf = str(min(3, self.nodes))
        listeners = (f"PLAINTEXT://127.0.0.1:{self.node_port(node)},"
                     f"CONTROLLER://127.0.0.1:{self.controller_port(node)}")
        advertised = f"PLAINTEXT://127.0.0.1:{self.node_port(node)}"
        protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if self.sasl:
            sasl_listener = f"{self.sasl_protocol}://127.0.0.1:{self.sasl_port(node)}"
            listeners += "," + sasl_listener
            advertised += "," + sasl_listener
            protocols += f",{self.sasl_protocol}:{self.sasl_protocol}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(node),
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": protocols,
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self._node_dir(node)),
            # Development settings: topics are created on purpose (`topics apply`).
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": rf,
            "min.insync.replicas": "2" if self.nodes >= 3 else "1",
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": "2" if self.nodes >= 3 else "1",
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests delete many topics; do it promptly.
            "delete.topic.enable": "true",
            "log.segment.delete.delay.ms": "1000",
            "file.delete.delay.ms": "1000",
            # Allow short session timeouts in tests of rebalances and frozen workers.
            "group.min.session.timeout.ms": "3000",
            "group.consumer.min.session.timeout.ms": "3000",
            "group.consumer.heartbeat.interval.ms": "1000",
            "group.consumer.min.heartbeat.interval.ms": "1000",
        }
        if self.sasl:
            settings.update(_sasl_settings(self.sasl_protocol.lower()))
        if self.tls:
            certs = self.certs
            settings.update({
                "listener.name.sasl_ssl.ssl.keystore.type": "PKCS12",
                "listener.name.sasl_ssl.ssl.keystore.location": str(certs.keystore),
                "listener.name.sasl_ssl.ssl.keystore.password": certs.password,
                "listener.name.sasl_ssl.ssl.key.password": certs.password,
            })
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _add_sasl_user(self, timeout: float) -> None:
        """Creates (or resets) the SCRAM credentials of the dev user, over PLAINTEXT, and waits
        until a SCRAM client is let in. Upserting on every start also covers data directories
        formatted before ``--sasl`` was used; PLAIN users live in the listener's JAAS config."""
        admin = AdminClient(_quiet({"bootstrap.servers": self.bootstrap}))
        try:
            # One request per mechanism: Kafka refuses two alterations of a user in one request.
            for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
                upsert: list[UserScramCredentialAlteration] = [UserScramCredentialUpsertion(
                    DEV_SASL_USER, ScramCredentialInfo(mechanism, _SCRAM_ITERATIONS),
                    DEV_SASL_PASSWORD.encode())]
                for fut in admin.alter_user_scram_credentials(upsert).values():
                    fut.result(timeout=timeout)
        except Exception as exc:
            self.down()
            raise DevBrokerError(f"creating the SASL user {DEV_SASL_USER!r} failed: {exc}") from exc
        deadline = time.monotonic() + timeout
        conf: dict[str, str | int | float | bool] = {
            "bootstrap.servers": self.sasl_bootstrap or "",
            "security.protocol": self.sasl_protocol, "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": DEV_SASL_USER, "sasl.password": DEV_SASL_PASSWORD}
        if self.tls:
            conf["ssl.ca.location"] = str(self.certs.ca_pem)
        while True:  # credentials reach the brokers through the metadata log, asynchronously
            try:
                AdminClient(_quiet(conf)).list_topics(timeout=1.0)
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    self.down()
                    raise DevBrokerError(f"the SASL listener on {self.sasl_bootstrap} did not "
                                         f"accept the dev user in time: {exc}") from exc
                time.sleep(0.2)

    def _format(self, java: str, classpath: str, node: int, cluster_id: str) -> None:
        proc = subprocess.run(
            [java, *_log_opts("tools-log4j2.properties"), "-cp", classpath,
             "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(self._node_config(node))],
            capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise DevBrokerError("formatting the broker storage failed: " + " | ".join(tail))

    def _start_node(self, java: str, classpath: str, node: int) -> int:
        heap = _HEAP.get(self.nodes, _SMALL_HEAP)
        log = open(self._node_log(node), "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [java, *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 *_log_opts("log4j2.properties"), "-cp", classpath, "kafka.Kafka",
                 str(self._node_config(node))],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # outlives the CLI process
        finally:
            log.close()
        return proc.pid

    def _wait(self, state: BrokerState, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node, pid in zip(self.node_ids, state.pids, strict=True):
                if not pid_alive(pid):
                    tail = self.log_tail(node=node)
                    errors = self.log_errors(node=node)
                    self.down()
                    raise DevBrokerError(f"broker node {node} exited during start-up; first "
                                         f"errors:\n{errors}\nlast log lines:\n{tail}")
            if self._all_registered():
                return
            time.sleep(0.2)
        tail = self.log_tail()
        self.down()
        raise DevBrokerError(f"the broker did not answer on {self.bootstrap} within "
                             f"{timeout:.0f}s; last log lines:\n" + tail)

    def _all_registered(self) -> bool:
        try:
            md = AdminClient(_quiet({"bootstrap.servers": self.bootstrap})).list_topics(
                timeout=1.0)
        except Exception:
            return False
        return len(md.brokers) >= self.nodes


def _sasl_settings(listener: str) -> dict[str, str]:
    plain = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
             f'user_{DEV_SASL_USER}="{DEV_SASL_PASSWORD}";')
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"listener.name.{listener}.plain.sasl.jaas.config": plain,
        f"listener.name.{listener}.scram-sha-256.sasl.jaas.config": scram,
        f"listener.name.{listener}.scram-sha-512.sasl.jaas.config": scram,
    }


def _log_opts(name: str) -> list[str]:
    path = resources.files("streamjobs._dev") / name
    return [f"-Dlog4j2.configurationFile={path}"]


def _random_cluster_id() -> str:
    # Kafka cluster ids are 16 random bytes, URL-safe base64 without padding. One starting
    # with "-" would be read as an option by `kafka-storage format -t` (Kafka's own
    # Uuid.randomUuid() skips those too).
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid
