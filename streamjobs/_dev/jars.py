"""Finding Java and the Kafka jars: ``$KAFKA_HOME`` or Maven Central into a user cache."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import DevBrokerError

__all__ = ["KAFKA_VERSION", "cache_dir", "check_java", "java_major", "resolve_classpath"]

# One pinned 4.x release; bumping it is a one-line change (the cache is per version).
KAFKA_VERSION = "4.1.1"
_LOG4J_VERSION = "2.24.3"  # the log4j2 line Kafka 4.1 is built against

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.streamjobs</groupId><artifactId>kafka-dev</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def cache_dir() -> Path:
    base = os.environ.get("STREAMJOBS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "streamjobs")
    return Path(base) / f"kafka-{KAFKA_VERSION}"


def java_major(java: str) -> int | None:
    """The major version of the ``java`` executable (``1.8`` style counts as 8), or None."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def check_java() -> str:
    """Path of a Java 17+ executable, or DevBrokerError with a one-line reason."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise DevBrokerError("Java 17 or newer is required to run Kafka, but `java` was not found")
    major = java_major(java)
    if major is None:
        raise DevBrokerError(f"cannot tell the Java version of {java}")
    if major < 17:
        raise DevBrokerError(f"Java 17 or newer is required to run Kafka; {java} is Java {major}")
    return java


def _kafka_home_libs() -> Path | None:
    home = os.environ.get("KAFKA_HOME")
    if not home:
        return None
    libs = Path(home) / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise DevBrokerError(f"KAFKA_HOME={home} is not an unpacked Apache Kafka distribution "
                             "(no libs/kafka_2.13-*.jar)")
    return libs


def resolve_classpath(*, fetch: bool = True) -> str:
    """Classpath for the broker and tools. Resolves the jars with Maven on first use."""
    libs = _kafka_home_libs()
    if libs is None:
        libs = cache_dir() / "libs"
        if not (libs / ".complete").exists():
            if not fetch:
                raise DevBrokerError("Kafka jars are not cached yet; run `streamjobs dev up`")
            _fetch(libs)
    return f"{libs}/*"


def _fetch(libs: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevBrokerError("neither KAFKA_HOME nor Maven (`mvn`) is available to get the "
                             "Kafka jars; install Maven or point KAFKA_HOME at a Kafka 4.x dist")
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    (work / "pom.xml").write_text(_POM.format(kafka=KAFKA_VERSION, log4j=_LOG4J_VERSION))
    tmp = work / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [mvn, "-q", "-B", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={tmp}", "-DincludeScope=runtime"],
        capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise DevBrokerError("Maven could not resolve the Kafka jars: " + " | ".join(tail))
    (tmp / ".complete").write_text(KAFKA_VERSION)
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)  # atomic: a half-fetched cache is never mistaken for a complete one
