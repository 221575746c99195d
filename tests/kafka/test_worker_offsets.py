"""Offsets: contiguous watermark, long jobs keep their partitions, the in-flight bound holds
short waits without pausing and pauses and resumes partitions without skipping a record."""

from __future__ import annotations

import time

import pytest

from streamjobs.events import PartitionsLost, PartitionsRevoked
from tests.conftest import wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def test_out_of_order_completion_commits_only_the_watermark(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With unordered execution, later records finishing first do not move the committed
    offset past a record still running; it moves once that record finishes."""
    env.create_topics("task", partitions=1)
    topic = env.topic()
    slow = env.emit(sleep_ms=5000)
    fast = {env.emit() for _ in range(5)}
    env.flush()
    w = InProcess(env, monkeypatch, ordering="unordered", concurrency=4, commit_interval=0.2)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= fast, 15, what="fast jobs")
        assert slow not in {x["id"] for x in env.lines()}
        time.sleep(1.0)  # several commit intervals
        assert env.committed(topic, 1)[0] <= 0  # offset 0 still runs: nothing past it
        wait_for(lambda: slow in {x["id"] for x in env.lines()}, 15, what="slow job")
        wait_for(lambda: env.committed(topic, 1)[0] == 6, 10, what="watermark to 6")
    finally:
        w.stop()


def test_job_longer_than_max_poll_interval_keeps_partitions(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 10 s job under max.poll.interval.ms=6000 causes no revocation: the poll loop keeps
    polling while it runs; the job runs once and its offset is committed."""
    env.create_topics("task", partitions=1)
    job = env.emit(sleep_ms=10_000)
    env.flush()
    w = InProcess(env, monkeypatch, max_poll_interval_ms=6000, session_timeout_ms=6000,
                  commit_interval=0.5)
    try:
        wait_for(lambda: env.lines(), 25, what="long job")
        wait_for(lambda: env.committed(env.topic(), 1)[0] == 1, 10, what="commit")
        time.sleep(2)
        before_stop = [*w.of(PartitionsRevoked), *w.of(PartitionsLost)]
    finally:
        w.stop()
    assert [x["id"] for x in env.lines()] == [job]
    assert not before_stop and not w.of(PartitionsLost)


def test_in_flight_bound_pauses_and_resumes_without_skipping(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With max_in_flight=4 and no hold before pausing (``SOFT_HOLD_S`` 0) the worker pauses
    and resumes partitions many times (seeking back to the first record not taken); every
    record runs exactly once."""
    from streamjobs._worker import partition
    monkeypatch.setattr(partition, "SOFT_HOLD_S", 0.0)
    env.create_topics("task")
    ids = [env.emit(key=f"k{i % 7}", sleep_ms=2) for i in range(100)]
    env.flush()
    w = InProcess(env, monkeypatch, ordering="unordered", concurrency=2, max_in_flight=4,
                  batch_size=50)
    try:
        wait_for(lambda: len(env.lines()) >= 100, 60, what="all jobs")
        time.sleep(1)
        ends = env.end_offsets(env.topic())
        wait_for(lambda: env.committed(env.topic()) == ends, 10, what="commit")
    finally:
        w.stop()
    assert w.worker.pauses > 5
    done = [x["id"] for x in env.lines()]
    assert sorted(done) == sorted(ids)  # exact: nothing skipped, nothing twice


def test_in_flight_bound_holds_short_waits_without_pausing(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the in-flight bound the worker first only stops taking records: when jobs finish
    within ``SOFT_HOLD_S`` nothing is paused (no pre-fetched record is fetched again), and
    every record runs exactly once."""
    env.create_topics("task")
    ids = [env.emit(key=f"k{i % 7}", sleep_ms=2) for i in range(100)]
    env.flush()
    w = InProcess(env, monkeypatch, ordering="unordered", concurrency=2, max_in_flight=4,
                  batch_size=50)
    try:
        wait_for(lambda: len(env.lines()) >= 100, 60, what="all jobs")
        paused = w.worker.pauses
    finally:
        w.stop()
    assert paused == 0
    done = [x["id"] for x in env.lines()]
    assert sorted(done) == sorted(ids)
