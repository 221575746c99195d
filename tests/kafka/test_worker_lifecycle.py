"""Worker lifecycle as a real process: graceful SIGTERM, second signal, KIP-848 protocol,
--processes supervision, --burst."""

from __future__ import annotations

import os
import re
import signal
import time

from tests.conftest import wait_for

from .worker_support import APP, Env, env_fixture  # noqa: F401


def test_sigterm_mid_load_loses_nothing_and_reruns_nothing(env: Env, spawn_cli) -> None:
    """SIGTERM while jobs run: the worker stops fetching, finishes running jobs within the
    grace period, commits, exits 0; a new worker finishes the rest. Every job ran, none
    twice."""
    env.create_topics("task")
    ids = {env.emit(key=f"k{i}", sleep_ms=30) for i in range(150)}
    env.flush()
    first = spawn_cli("worker", APP, "--job-types", "task", "--concurrency", "4",
                      env=env.cli_env())
    wait_for(lambda: len(env.lines()) >= 20, 30, what="some jobs done")
    first.signal(signal.SIGTERM)
    assert first.wait(40) == 0, first.output()
    before = len(env.lines())
    assert before < 150, "load finished before the signal: test proves nothing"
    second = spawn_cli("worker", APP, "--job-types", "task", "--burst", env=env.cli_env())
    assert second.wait(60) == 0, second.output()
    done = [x["id"] for x in env.lines()]
    assert set(done) == ids
    assert len(done) == len(ids), "a job finished twice"


def test_second_signal_exits_at_once(env: Env, spawn_cli) -> None:
    """A second SIGTERM during the graceful drain exits at once with a non-zero code."""
    env.create_topics("task")
    env.emit(key="same")
    env.emit(key="same", sleep_ms=30_000)  # runs right after the first (same partition)
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", "--grace-period", "60",
                     env=env.cli_env())
    wait_for(env.lines, 20, what="first job")
    time.sleep(1)
    proc.signal(signal.SIGTERM)
    time.sleep(1)
    assert proc.popen.poll() is None  # still draining the 30 s job
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = proc.wait(5)
    assert code != 0 and time.monotonic() - t0 < 3


def test_group_protocol_consumer(env: Env, spawn_cli) -> None:
    """With --group-protocol consumer (KIP-848) the worker joins, runs every job and commits."""
    env.create_topics("task")
    ids = {env.emit(key=f"k{i}") for i in range(20)}
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", "--group-protocol", "consumer",
                     "--burst", env=env.cli_env())
    assert proc.wait(60) == 0, proc.output()
    assert sorted(x["id"] for x in env.lines()) == sorted(ids)
    assert env.committed(env.topic()) == env.end_offsets(env.topic())


def test_processes_supervisor_replaces_a_killed_child(env: Env, spawn_cli) -> None:
    """--processes 2 starts two workers; a SIGKILLed child is replaced; SIGTERM stops all and
    the supervisor exits 0."""
    env.create_topics("task")
    proc = spawn_cli("worker", APP, "--job-types", "task", "--processes", "2",
                     "--session-timeout-ms", "6000", env=env.cli_env())

    def pids() -> list[int]:
        return [int(p) for p in re.findall(r"started \(pid (\d+)\)", proc.output())]

    wait_for(lambda: len(pids()) == 2, 20, what="two children")
    victim = pids()[0]
    time.sleep(3)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(pids()) == 3, 20, what="replacement child")
    ids = {env.emit(key=f"k{i}") for i in range(20)}
    env.flush()
    wait_for(lambda: {x["id"] for x in env.lines()} >= ids, 40, what="jobs after replacement")
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.output()
    assert len({x["pid"] for x in env.lines()} - {victim}) >= 1


def test_burst_exits_when_drained(env: Env, spawn_cli) -> None:
    """--burst exits 0 once every assigned partition is drained and nothing is in flight."""
    env.create_topics("task")
    ids = {env.emit(key=f"k{i}", sleep_ms=5) for i in range(40)}
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", "--burst", env=env.cli_env())
    assert proc.wait(60) == 0, proc.output()
    assert {x["id"] for x in env.lines()} == ids
    assert env.committed(env.topic()) == env.end_offsets(env.topic())
