"""After a bug fix, `streamjobs replay offsets --execute` makes a stopped worker group run the
chosen stretch of its topic again: the jobs really run a second time."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import RunCli, wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def test_replay_execute_makes_the_worker_run_jobs_again(
        env: Env, monkeypatch: pytest.MonkeyPatch, run_cli: RunCli) -> None:
    """Rule: a dry run changes nothing (the committed offset stays at the end); after
    `--to-earliest --execute` the restarted worker runs every job of the topic once more."""
    env.create_topics("task", partitions=1)
    ids = {env.emit(key="k") for _ in range(5)}
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= ids, 30, what="first run")
    finally:
        w.stop()
    topic = env.topic()
    args = ("replay", "offsets", "--group", env.group, "--topic", topic, "--to-earliest")
    dry = run_cli(*args)
    assert dry.returncode == 0, dry.stderr
    assert "5 job(s) would run again" in dry.stdout, dry.stdout
    assert env.committed(topic, 1) == {0: 5}
    done = run_cli(*args, "--execute")
    assert done.returncode == 0, done.stderr
    assert env.committed(topic, 1) == {0: 0}
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: len(env.lines()) >= 10, 30, what="the replayed jobs")
    finally:
        w.stop()
    runs = Counter(x["id"] for x in env.lines())
    assert runs == {i: 2 for i in ids}
