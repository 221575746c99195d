"""`streamjobs status`, and the status records of `dlq reprocess` and `replay range`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamjobs._config import KafkaConfig
from streamjobs._status import Transition
from tests.conftest import BOOTSTRAP, ROOT, RunCli, SpawnCli, wait_for
from tests.kafka.status_support import APP, SCHEMAS, InProcessWorker, StatusEnv, status_env
from tests.kafka.test_readme import README, _delete_prefixed


@pytest.fixture(scope="module")
def env(kafka_config: KafkaConfig) -> Iterator[StatusEnv]:
    with status_env(kafka_config, "cli") as e:
        yield e


def test_status_prints_the_timeline_json_and_exits_3_when_unknown(
        env: StatusEnv, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The human output shows state, attempts, worker, error and where the record is; --json
    is JobStatus.as_dict(); an unknown id exits 3 with one line."""
    job_id = env.emit("stask", fail="error", fail_attempts=1)
    worker = InProcessWorker(env, monkeypatch)
    try:
        env.wait_state(job_id, "succeeded")
    finally:
        worker.stop()
    r = run_cli("status", job_id, env=env.cli_env())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"job {job_id}  type stask  state succeeded  attempts 2")
    assert "retrying" in lines[2] and "RuntimeError: boom on attempt 1" in lines[2]
    assert f"{env.topic('stask')}.retry.1s" in lines[2] and "due " in lines[2]
    assert lines[-1].startswith(f"now: succeeded (ran from {env.topic('stask')}.retry.1s[")
    r = run_cli("status", job_id, "--json", env=env.cli_env())
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout)
    assert doc["state"] == "succeeded" and doc["attempts"] == 2
    assert [t["state"] for t in doc["transitions"]] == ["emitted", "retrying", "succeeded"]
    r = run_cli("status", "019ad3c1-0000-7000-8000-000000000000", env=env.cli_env())
    assert r.returncode == 3
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1
    assert "not known" in r.stderr and "failures" in r.stderr
    r = run_cli("status", job_id, env=env.cli_env(STREAMJOBS_TOPIC_PREFIX="no-such-env."))
    assert r.returncode == 3 and "`streamjobs topics apply`" in r.stderr


def test_watch_follows_the_job_to_a_final_state(env: StatusEnv, spawn_cli: SpawnCli) -> None:
    """`status --watch` started before the job runs prints each transition as it lands and
    exits 0 once the job succeeded."""
    job_id = env.emit("stask", sleep_ms=3000)  # long enough for a `started` record
    watcher = spawn_cli("status", job_id, "--watch", env=env.cli_env())
    time.sleep(1.0)
    assert watcher.popen.poll() is None  # still following: only `emitted` so far
    worker = spawn_cli("worker", APP, env=env.cli_env())
    try:
        assert watcher.wait(60) == 0, watcher.output()
    finally:
        worker.signal(signal.SIGTERM)  # leaves the group
        worker.wait(40)
    out = watcher.output()
    assert "emitted" in out and "started" in out and "succeeded" in out
    assert out.strip().splitlines()[-1].startswith("now: succeeded")


def test_reprocess_and_replay_record_their_steps(env: StatusEnv, run_cli: RunCli,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`dlq reprocess --execute` records `reprocessed` (from which dead letter), its re-run is
    recorded after it; `replay range --execute` records `replayed`."""
    dead_id = env.emit("stask", fail="permanent", fail_attempts=1)
    ok_id = env.emit("stask")
    worker = InProcessWorker(env, monkeypatch)
    try:
        dead = env.wait_state(dead_id, "dead").last
        # The first `dead` record is written with the dead letter; its place in the DLQ
        # follows once the broker acknowledged that record.
        placed = wait_for(lambda: (s := env.status(dead_id)) is not None
                          and s.last.offset is not None and s.last, 30,
                          what=f"job {dead_id}'s dead-letter place")
        assert isinstance(placed, Transition) and placed.state == "dead"
        dead = placed
        ok = env.wait_state(ok_id, "succeeded").last
    finally:
        worker.stop()
    r = run_cli("dlq", "reprocess", "--topic", dead.topic or "", "--execute",
                env=env.cli_env())
    assert r.returncode == 0, r.stdout + r.stderr
    reprocessed = env.wait_state(dead_id, "reprocessed").last
    assert reprocessed.reason == f"{dead.topic}/{dead.partition}/{dead.offset}"
    assert reprocessed.topic == env.topic("stask")
    r = run_cli("replay", "range", "--topic", ok.topic or "", "--partition", str(ok.partition),
                "--from-offset", str(ok.offset), "--to-offset", str(ok.offset), "--execute",
                env=env.cli_env())
    assert r.returncode == 0, r.stdout + r.stderr
    replayed = env.wait_state(ok_id, "replayed").last
    assert replayed.reason == f"{ok.topic}/{ok.partition}/{ok.offset}"
    worker = InProcessWorker(env, monkeypatch)
    try:
        env.wait_state(ok_id, "succeeded")
        again = env.wait_state(dead_id, "dead")  # the handler still refuses it
    finally:
        worker.stop()
    assert [t.state for t in again.transitions] == ["emitted", "dead", "reprocessed", "dead"]
    assert wait_for(lambda: env.states(ok_id)[-2:] == ["replayed", "succeeded"], 10)


README_COMMANDS = [
    """JOB_ID=$(streamjobs emit send_welcome_email --json '{"user_id": "u-7", "email": "eve@example.com", "locale": "en"}')""",  # noqa: E501
    "streamjobs worker examples.demo_app:app --burst --metrics-port 0",
    'streamjobs status "$JOB_ID"',
    'streamjobs status "$JOB_ID" --json',
    'streamjobs status "$JOB_ID" --watch',
]


def test_readme_job_status_commands_run(run_cli: RunCli, tmp_path: Path,
                                        kafka_config: KafkaConfig) -> None:
    """The README's "Job status" commands run as shown (one shell, the demo catalogue, a
    private prefix): the job is shown succeeded, as text, as JSON, and --watch ends."""
    section = README[README.index("## Job status\n"):README.index("\n## CLI\n")]
    block = re.findall(r"```console\n(.*?)```", section, flags=re.S)[0]
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    assert commands == README_COMMANDS
    prefix = f"st-readme-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP,
           "STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_GROUP_ID": f"{prefix}group",
           "DEMO_STATE_DIR": str(tmp_path / "demo"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert run_cli("topics", "apply", env=env).returncode == 0
    try:
        script = "set -e\n" + "\n".join(
            f"echo '>>> {i}'\n{c}" for i, c in enumerate(commands)) + "\n"
        out = subprocess.run(["bash", "-c", script], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=240)
        assert out.returncode == 0, out.stdout + out.stderr
        parts = out.stdout.split(">>> ")
        text, as_json, watched = parts[3], parts[4], parts[5]
        assert "state succeeded" in text and "now: succeeded" in text
        assert orjson.loads(as_json.split("\n", 1)[1])["state"] == "succeeded"
        assert watched.strip().splitlines()[-1].startswith("now: succeeded")
    finally:
        _delete_prefixed(prefix)


def test_topics_plan_and_apply_include_the_prefixed_status_topic(run_cli: RunCli,
                                                                 kafka_config: KafkaConfig,
                                                                 ) -> None:
    """`topics plan` lists `<prefix>streamjobs.status` (compacted) and `topics apply` creates
    it; a second plan has nothing to do."""
    prefix = f"st-plan-{uuid.uuid4().hex[:8]}."
    env = {"STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_SCHEMAS": str(SCHEMAS)}
    try:
        r = run_cli("topics", "plan", "--json", env=env)
        assert r.returncode == 2, r.stderr
        status = [c for c in orjson.loads(r.stdout)["changes"]
                  if c["topic"] == f"{prefix}streamjobs.status"]
        assert [(c["action"], c["role"], c["partitions"]) for c in status] == [
            ("create", "status", 6)]
        assert status[0]["config"]["cleanup.policy"] == "compact,delete"
        assert run_cli("topics", "apply", env=env).returncode == 0
        r = run_cli("topics", "plan", env=env)
        assert r.returncode == 0 and "nothing to do" in r.stdout
    finally:
        _delete_prefixed(prefix)
