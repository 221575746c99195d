"""`make demo` runs the whole story on the local broker and ends well: a worker, a few hundred
jobs of which some fail transiently (retried) and some permanently (dead-lettered), the fix,
`streamjobs dlq reprocess --execute`, and a summary where every job finally succeeded."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import BOOTSTRAP, ROOT


def test_demo_runs_to_a_happy_end(kafka_config: object) -> None:
    """Rule: the demo exits 0, retries and dead-letters some jobs, and reprocesses exactly the
    dead-lettered ones, after which all emitted jobs have succeeded."""
    env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP}
    out = subprocess.run([sys.executable, "-m", "examples.demo"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    rows = dict(re.findall(r"^  ([a-z][A-Za-z ()-]+?)\s{2,}(\d+)$", out.stdout, flags=re.M))
    emitted, succeeded = int(rows["emitted"]), int(rows["processed (succeeded)"])
    retried, dead = int(rows["retried"]), int(rows["dead-lettered"])
    reprocessed = int(rows["reprocessed from the DLQ"])
    assert emitted == succeeded == 300
    assert retried > 0 and dead > 0
    assert reprocessed == dead
    assert "a second run re-publishes 0" in out.stdout
    assert "demo finished" in out.stdout
