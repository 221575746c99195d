"""`make test` names the programs it needs before starting (`.ci/tools`), and the README's
prerequisites list every one of them."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "tools"
BASH = "/bin/bash"


def _programs() -> dict[str, str]:
    """program -> Debian package, from the script's own table."""
    return dict(re.findall(r'^  "([\w-]+):([\w.-]+):', SCRIPT.read_text(), flags=re.M))


def _run(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, str(SCRIPT), *args], env={"PATH": path}, text=True,
                          capture_output=True, timeout=30)


def test_missing_programs_are_named_with_their_package(tmp_path: Path) -> None:
    """Rule: with kcat (or any program) missing, the check exits 1 naming it and the
    apt-get line that installs it; with every program present it exits 0 silently."""
    programs = _programs()
    assert {"java", "mvn", "kcat", "chromium", "chromedriver"} <= set(programs)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in programs:
        if program != "kcat":
            exe = bin_dir / program
            exe.write_text("#!/bin/sh\n")
            exe.chmod(0o755)
    res = _run(str(bin_dir))
    assert res.returncode == 1
    assert "kcat (package kcat)" in res.stdout
    assert "sudo apt-get install kcat" in res.stdout
    assert "java" not in res.stdout.split("On Debian")[0]
    assert _run(str(bin_dir), "--packages").stdout.split() == ["kcat"]
    (bin_dir / "kcat").write_text("#!/bin/sh\n")
    (bin_dir / "kcat").chmod(0o755)
    res = _run(str(bin_dir))
    assert res.returncode == 0 and res.stdout == ""


def test_make_test_checks_first_and_readme_lists_every_program() -> None:
    """Rule: `make test` runs the check before the broker and the suite, and README's
    prerequisites name every program and package the check knows."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: tools up$", makefile, flags=re.M)
    assert ".ci/tools" in makefile
    assert os.access(SCRIPT, os.X_OK)
    readme = (ROOT / "README.md").read_text()
    intro = readme[:readme.index("## Concepts")]
    for program, package in _programs().items():
        if program == "make":
            continue
        assert f"`{program}`" in intro, program
        assert package in intro, package
