"""Async handlers with ordering=unordered: one lean coroutine call per job on the event loop, up
to --concurrency at once, successes summarised once per loop iteration and partition."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from streamjobs._worker import Worker, WorkerSettings
from streamjobs.events import Event, EventBus, JobRetried, JobsSucceeded
from tests.conftest import wait_for

from .worker_support import Env, env_fixture  # noqa: F401


def _peak_overlap(runs: list[dict[str, Any]]) -> int:
    edges = sorted([(r["start"], 1) for r in runs] + [(r["end"], -1) for r in runs])
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def test_unordered_async_jobs_run_concurrently_and_are_summarised_once(
        env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Rule: 120 async jobs sleeping 200 ms at concurrency 40 (unordered) overlap up to 40 at
    a time and never more; every success reaches a JobsSucceeded listener exactly once, with
    its own finish time (finished_at), a job failing once is retried and then succeeds, and
    the committed offsets reach the end of every partition."""
    from tests.apps.tasks import app

    env.create_topics("atask")
    for i in range(120):
        env.emit("atask", id=f"j{i}", key=f"k{i}", sleep_ms=200,
                 **({"fail": "retry:1", "fail_attempts": 1} if i == 7 else {}))
    env.flush()
    monkeypatch.setattr(app, "topic_prefix", env.prefix)
    monkeypatch.setenv("STREAMJOBS_TEST_LEDGER", str(env.ledger))
    summaries: list[JobsSucceeded] = []
    retried: list[Event] = []
    bus = EventBus()
    bus.subscribe(summaries.append, JobsSucceeded)  # summaries only: the lean path
    bus.subscribe(retried.append, JobRetried)
    worker = Worker(app, WorkerSettings(group_id=env.group, job_types=("atask",),
                                        ordering="unordered", concurrency=40), env.kafka, bus)
    thread = threading.Thread(target=worker.run, kwargs={"install_signals": False},
                              daemon=True)
    thread.start()
    try:
        wait_for(lambda: len({x["id"] for x in env.lines()}) >= 120, 60, what="all jobs")
        topic = env.topic("atask")
        wait_for(lambda: env.committed(topic) == env.end_offsets(topic), 30,
                 what="commits at the end")
    finally:
        worker.stop("test")
        thread.join(40)
    runs = env.lines()
    assert sorted(x["id"] for x in runs) == sorted(f"j{i}" for i in range(120))
    assert [x["attempt"] for x in runs if x["id"] == "j7"] == [2]
    assert len(retried) == 1
    assert 20 <= _peak_overlap(runs) <= 40
    counted = [n for e in summaries for n in [len(e.durations_s)]]
    assert sum(counted) == 120  # every success once, the retried one on its second attempt
    for e in summaries:
        assert len(e.finished_at) == len(e.durations_s) == len(e.created_at_ms)
        assert all(d >= 0.19 for d in e.durations_s)
        assert all(c is not None for c in e.created_at_ms)
    ends = sorted(x["end"] for x in runs)
    finished = sorted(t for e in summaries for t in e.finished_at)
    assert all(abs(a - b) < 0.5 for a, b in zip(ends, finished, strict=True))
