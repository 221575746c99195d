"""Worker basics: handlers run, offsets are committed at the watermark."""

from __future__ import annotations

import signal

from tests.conftest import wait_for

from .worker_support import APP, Env, env_fixture  # noqa: F401


def test_jobs_run_and_offsets_committed(env: Env, spawn_cli) -> None:
    """Every emitted job runs once and the group's committed offsets reach the end of each
    partition (at-least-once with manual offset store and batched commits)."""
    env.create_topics("task")
    ids = {env.emit(key=f"k{i}") for i in range(30)}
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", env=env.cli_env())
    wait_for(lambda: {x["id"] for x in env.lines()} >= ids, 40, what="all jobs to run")
    ends = env.end_offsets(env.topic())
    wait_for(lambda: env.committed(env.topic()) == ends, 20, what="offsets committed")
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.output()
    assert sorted(x["id"] for x in env.lines()) == sorted(ids)
