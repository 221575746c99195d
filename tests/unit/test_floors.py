"""Install metadata: every runtime dependency declares a floor, `.ci/floors` turns the floors
into pip constraints, and `make floor` (run by CI) tests on exactly those versions."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_runtime_dependency_has_a_floor_and_floors_pins_it() -> None:
    """Rule: each dependency is `name>=X...`, and `.ci/floors` prints `name==X` for each."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    expected = []
    for dep in deps:
        m = re.match(r"^([A-Za-z0-9_.-]+)>=([0-9][^,]*)", dep.replace(" ", ""))
        assert m, f"{dep!r} declares no floor"
        expected.append(f"{m.group(1)}=={m.group(2)}")
    out = subprocess.run([sys.executable, str(ROOT / ".ci" / "floors")], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == expected


def test_confluent_kafka_floor_has_producer_close() -> None:
    """Rule: the declared confluent-kafka floor is at least 2.13, the first release whose
    Producer has close() (streamjobs.Producer.close calls it)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [ck] = [d for d in deps if d.startswith("confluent-kafka")]
    floor = tuple(int(x) for x in re.search(r">=([0-9.]+)", ck).group(1).split("."))  # type: ignore[union-attr]
    assert floor >= (2, 13)
    assert "self._kafka.close()" in (ROOT / "streamjobs" / "_producer.py").read_text()


def test_ci_runs_the_floor_job() -> None:
    """Rule: CI runs `make floor`, which installs with the floors as constraints, checks the
    installed versions and runs the unit tests and a broker smoke test."""
    assert re.search(r"^make floor$", (ROOT / ".ci" / "run").read_text(), flags=re.M)
    makefile = (ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\nfloor:"):]
    target = target[:target.index("\n\n")]
    assert ".ci/floors --check" in target and "tests/unit" in target and "$(FLOOR_SMOKE)" in target
    assert "constraints.txt" in makefile and ".ci/floors >" in makefile
