"""`streamjobs worker` as a user meets it: start-up mistakes end in one line, --burst ends with
the counts, librdkafka settings from the command line reach the clients."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from tests.conftest import RunCli, wait_for

from .worker_support import APP, SCHEMAS, Env, env_fixture  # noqa: F401

GOOD = f"""
from streamjobs._worker import App
app = App(schemas={str(SCHEMAS)!r}, name="t")
"""

# module source (None: no file at all), MODULE:APP, exit code, words the one line must contain
CASES = {
    "syntax error": ("def broken(:\n", "mod:app", 1,
                     ["syntax error", "mod.py", "line 1"]),
    "failing import inside": ("import no_such_dependency_xyz\n", "mod:app", 1,
                              ["importing 'mod' failed", "mod.py line 1", "ModuleNotFoundError",
                               "no_such_dependency_xyz"]),
    "raises while importing": ("x = 1\nraise RuntimeError('no config')\n", "mod:app", 1,
                               ["mod.py line 2", "RuntimeError: no config"]),
    "missing module": (None, "no_such_module_xyz:app", 2,
                       ["no module named 'no_such_module_xyz'", "MODULE:APP"]),
    "missing attribute": (GOOD, "mod:worker_app", 2, ["mod.py", "no attribute 'worker_app'"]),
    "not an App": (GOOD + "other = 42\n", "mod:other", 2, ["is a int, not a streamjobs App"]),
    "handler not callable": (GOOD + "app.job('task')(42)\n", "mod:app", 1,
                             ["mod.py line 4", "handlers.task: 42 is not callable"]),
    "handler signature": (GOOD + "@app.job('task')\ndef task(payload): ...\n", "mod:app", 1,
                          ["mod.py line 4", "task(payload) cannot be called as handler"]),
    "unknown job type": (GOOD + "@app.job('nope')\ndef nope(payload, ctx): ...\n", "mod:app", 1,
                         ["app 'mod:app'", "handlers.nope", "catalogue.toml does not define",
                          "known: task, atask"]),
}


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_start_up_mistakes_end_in_one_line(case: str, run_cli: RunCli, tmp_path: Path) -> None:
    """Rule: a user module that fails to import (syntax error, failing import inside, any
    exception), a MODULE:APP that names nothing, and a bad handler each end in one line naming
    the cause and the file or argument, exit 2 (usage) or 1 (the app), never a traceback."""
    source, target, code, words = CASES[case]
    if source is not None:
        (tmp_path / "mod.py").write_text(source)
    r = run_cli("worker", target, "--burst", "--metrics-port", "0", cwd=tmp_path,
                env={"PYTHONPATH": ""})
    assert r.returncode == code, r.stderr
    line = _one_error_line(r.stderr)
    assert all(w in line for w in words), line


def test_a_broken_app_under_the_supervisor_is_one_line_not_a_crash_loop(
        run_cli: RunCli, tmp_path: Path) -> None:
    """Rule: with --processes P the app is checked before any child starts: a broken module
    ends in its one line, exit 1, instead of children dying and being replaced forever."""
    (tmp_path / "mod.py").write_text("import no_such_dependency_xyz\n")
    r = run_cli("worker", "mod:app", "--processes", "2", cwd=tmp_path, timeout=60)
    assert r.returncode == 1
    assert "no_such_dependency_xyz" in _one_error_line(r.stderr)


def test_metrics_port_in_use_names_the_option(run_cli: RunCli, tmp_path: Path) -> None:
    """Rule: a metrics port already in use ends in one line naming --metrics-port, exit 2."""
    (tmp_path / "mod.py").write_text(GOOD + "@app.job('task')\ndef task(p, c): ...\n"
                                     "@app.job('atask')\ndef atask(p, c): ...\n")
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("worker", "mod:app", "--burst", "--metrics-port", str(port), cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr)
    assert f"--metrics-port port {port}: already in use" in line


def test_bad_librdkafka_setting_names_the_key(run_cli: RunCli) -> None:
    """Rule: an unknown --consumer-config / STREAMJOBS_PRODUCER_CONFIG key ends in one line
    naming it, exit 2."""
    r = run_cli("worker", APP, "--consumer-config", "fetch.queue.backof.ms=10")
    assert r.returncode == 2
    assert "consumer-config: fetch.queue.backof.ms=10: No such configuration property" in (
        _one_error_line(r.stderr))
    r = run_cli("topics", "plan", env={"STREAMJOBS_PRODUCER_CONFIG": "linger.ms=5, lingr.ms=5"})
    assert r.returncode == 2
    assert "producer-config: lingr.ms=5" in _one_error_line(r.stderr)


def test_burst_ends_with_one_line_of_counts(env: Env, spawn_cli) -> None:
    """Rule: --burst ends with one line giving the jobs succeeded, retried and dead-lettered and
    the seconds run; the metrics address is logged at start; wait-tier partitions are
    summarised, not listed."""
    env.create_topics("task")
    for i in range(4):
        env.emit(key=f"k{i}")
    env.emit(key="r", fail="retry:0", fail_attempts=1)  # retried once, then succeeds
    env.emit(key="d", fail="permanent", fail_attempts=9)  # dead-lettered at once
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", "--burst",
                     env=env.cli_env(STREAMJOBS_LOG_LEVEL="info", STREAMJOBS_LOG_FORMAT="json"))
    assert proc.wait(90) == 0, proc.output()
    lines = [json.loads(x) for x in proc.output().splitlines() if x.startswith("{")]
    events = [x["event"] for x in lines]
    assert events[0] == "metrics.listening" and lines[0]["address"].startswith("0.0.0.0:")
    assert "worker.started" in events  # after it; a warning (no status topic here) may precede
    stopped = lines[-1]
    assert stopped["event"] == "worker.stopped", events
    assert stopped["reason"] == "burst: drained"
    assert (stopped["succeeded"], stopped["retried"], stopped["dead_lettered"]) == (
        len(env.lines()), 1, 1)
    assert stopped["succeeded"] >= 4 and 0 < stopped["seconds"] < 90
    tiers = [p for x in lines if x["event"] == "partitions.assigned" for p in x["partitions"]]
    n = len(env.catalogue.wait_tiers("tasks"))
    assert tiers == [f"{env.topic()}[0-2]", f"{env.topic()}.retry.*: {n} topics, {3 * n} "
                     "partitions"], tiers


def test_consumer_config_reaches_the_worker_consumers(env: Env, spawn_cli,
                                                      admin: AdminClient) -> None:
    """Rule: --consumer-config KEY=VALUE settings reach the worker's consumers (here client.id,
    which the group's description shows for every member)."""
    env.create_topics("task")
    proc = spawn_cli("worker", APP, "--job-types", "task", "--consumer-config",
                     f"client.id={env.group}-cid", env=env.cli_env())

    def members() -> list[str]:
        desc = admin.describe_consumer_groups([env.group])[env.group].result(timeout=10)
        return [m.client_id for m in desc.members]

    found = wait_for(lambda: members() or None, 40, what="the worker to join its group")
    assert found == [f"{env.group}-cid"], found
    proc.signal(15)
    assert proc.wait(30) == 0, proc.output()


def test_producer_config_reaches_emit(run_cli: RunCli, make_topic, unique: str) -> None:
    """Rule: --producer-config settings reach emit's producer: with message.max.bytes=1000 a
    2 kB payload is refused (exit 1, one line); without it the same job is sent."""
    make_topic(name=f"{unique}.demo.emails")
    args = ["emit", "send_welcome_email", "--json",
            json.dumps({"user_id": "u", "email": "x" * 2000}), "--topic-prefix", f"{unique}."]
    r = run_cli(*args, "--producer-config", "message.max.bytes=1000")
    assert r.returncode == 1, r.stderr
    assert "too large" in _one_error_line(r.stderr)
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr


def test_listeners_logs_and_none(env: Env, spawn_cli) -> None:
    """Rule: --listeners logs runs with the logs and no HTTP port; --listeners none writes
    nothing at all (no listener observes the worker), and both still run every job."""
    env.create_topics("task")
    ids = {env.emit(key=f"k{i}") for i in range(3)}
    env.flush()
    logs = spawn_cli("worker", APP, "--job-types", "task", "--burst", "--listeners", "logs",
                     env=env.cli_env(STREAMJOBS_LOG_LEVEL="info"))
    assert logs.wait(60) == 0, logs.output()
    events = [json.loads(x)["event"] for x in logs.output().splitlines()]
    assert "metrics.listening" not in events and events[0] == "worker.started", events
    assert events[-1] == "worker.stopped"
    assert {x["id"] for x in env.lines()} == ids
    more = {env.emit(key=f"m{i}") for i in range(3)}
    env.flush()
    none = spawn_cli("worker", APP, "--job-types", "task", "--burst", "--listeners", "none",
                     env=env.cli_env(STREAMJOBS_LOG_LEVEL="debug"))
    assert none.wait(60) == 0, none.output()
    assert none.output() == ""
    assert {x["id"] for x in env.lines()} == ids | more
