"""The README's commands and Python examples are real: this test runs them, in order, on the
local broker (with a private topic prefix and consumer group so it never meets other tests)."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BOOTSTRAP, ROOT, RunCli, streamjobs_exe

README = (ROOT / "README.md").read_text()

# Commands shown in the README outside the quick start, and the test that runs each of them.
COVERED_ELSEWHERE = {
    "bench/run --quick": ".ci/run",
    "make test": ".ci/run",
    "make lint": ".ci/run",
    **{c: "tests/kafka/test_status_cli.py" for c in (
        """JOB_ID=$(streamjobs emit send_welcome_email --json '{"user_id": "u-7", "email": "eve@example.com", "locale": "en"}')""",  # noqa: E501
        "streamjobs worker examples.demo_app:app --burst --metrics-port 0",
        'streamjobs status "$JOB_ID"', 'streamjobs status "$JOB_ID" --json',
        'streamjobs status "$JOB_ID" --watch')},
    "make floor": ".ci/run",
    "streamjobs schedules list": "tests/kafka/test_schedules.py",
    "streamjobs schedules list --json": "tests/kafka/test_schedules.py",
}


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def _commands(text: str) -> list[str]:
    return [line[2:].strip() for line in text.splitlines() if line.startswith("$ ")]


def test_readme_opens_with_the_two_commands() -> None:
    """Rule: the README opens with exactly `make demo` and `make test`."""
    first = _blocks("console")[0]
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == [
        "make demo", "make test"]


def test_quick_start_commands_run(run_cli: RunCli, unique: str, tmp_path: Path,
                                  kafka_config: object) -> None:
    """Rule: every quick-start command exits 0 against the real broker, in README order."""
    prefix = f"{unique}."
    group = f"{unique}-group"
    env = {"STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_GROUP_ID": group,
           "DEMO_STATE_DIR": str(tmp_path / "demo"), "STREAMJOBS_METRICS_PORT": "0"}
    commands = _commands(_section("Quick start"))
    assert len(commands) >= 10
    outputs: dict[str, str] = {}
    try:
        for command in commands:
            # The README speaks of the demo's own names; this run uses private ones.
            command = command.replace("streamjobs-demo", group)
            command = command.replace("--topic demo.", f"--topic {prefix}demo.")
            command = command.replace("127.0.0.1:9092", BOOTSTRAP)
            if "||" in command:
                # Shell as shown (`topics plan || [ $? -eq 2 ]`): it must survive `set -e`.
                out = _bash(command, env)
                assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
                outputs[command] = out.stdout
                continue
            argv = shlex.split(command)
            assert argv[0] == "streamjobs"
            if argv[1:3] == ["dev", "up"]:
                port = BOOTSTRAP.rsplit(":", 1)[1]
                status = run_cli("dev", "status", "--port", port)
                if status.returncode != 0 and not os.environ.get("CI"):
                    continue  # a broker this checkout did not start (a developer's own)
            out = run_cli(*argv[1:], env=env, timeout=240)
            assert out.returncode == 0, f"{command}\n{out.stdout}\n{out.stderr}"
            assert "Traceback" not in out.stderr
            outputs[command] = out.stdout
    finally:
        run_cli("topics", "plan", env=env)  # keeps nothing; topics are removed below
        _delete_prefixed(prefix)
    emitted = outputs[next(c for c in outputs if c.startswith("streamjobs emit send_welcome"))]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n",
                        emitted)
    stats = outputs["streamjobs dlq stats --all"]
    assert "permanent_error" in stats, stats  # the demo app's bug #42 dead-letters jobs


def test_python_examples_run(unique: str, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli,
                             kafka_config: object) -> None:
    """Rule: every Python block of the README runs as shown."""
    prefix = f"{unique}."
    monkeypatch.setenv("STREAMJOBS_TOPIC_PREFIX", prefix)
    monkeypatch.chdir(ROOT)
    assert run_cli("topics", "apply", env={"STREAMJOBS_TOPIC_PREFIX": prefix}).returncode == 0
    try:
        blocks = _blocks("python")
        assert len(blocks) >= 2
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    finally:
        _delete_prefixed(prefix)


def test_other_commands_are_run_somewhere() -> None:
    """Rule: a command shown outside the quick start is run by a named test or by CI."""
    quick = set(_commands(_section("Quick start")))
    for block in _blocks("console")[1:]:
        for command in _commands(block):
            if command in quick:
                continue
            command = command.split("#")[0].strip()
            assert command in COVERED_ELSEWHERE, f"README command not run anywhere: {command}"
            where = ROOT / COVERED_ELSEWHERE[command]
            assert where.exists(), where
            assert command in where.read_text(), f"{where} does not run {command!r}"


def _bash(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``command`` in ``bash -euo pipefail`` with this checkout's ``streamjobs`` first on PATH."""
    [exe, *_] = streamjobs_exe()
    path = f"{Path(exe).parent}:{os.environ.get('PATH', '')}"
    full = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP, **env, "PATH": path}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], env=full, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120)


def test_topics_plan_line_survives_set_e(unique: str, kafka_config: object) -> None:
    """Rule: the quick start's `topics plan` line exits 0 under `set -e` although the command
    itself exits 2 (changes pending), and a real failure still stops the script."""
    [line] = [c for c in _commands(_section("Quick start")) if "topics plan" in c]
    assert "||" in line
    env = {"STREAMJOBS_TOPIC_PREFIX": f"{unique}."}
    assert _bash(line, env).returncode == 0
    bad = _bash(line.replace("topics plan", "topics plan --schemas /nonexistent"), env)
    assert bad.returncode not in (0, 2)


def _delete_prefixed(prefix: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if names:
        for fut in admin.delete_topics(names, operation_timeout=30).values():
            with contextlib.suppress(Exception):  # already gone is fine
                fut.result(timeout=30)
