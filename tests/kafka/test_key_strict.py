"""``--ordering key-strict``: a retried job keeps its key's order, on the real broker."""

from __future__ import annotations

import pytest

from streamjobs import _headers as h
from streamjobs._names import dlq_topic
from tests.conftest import wait_for

from .followup_support import read_all
from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def test_later_jobs_of_a_key_wait_for_its_retried_job(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job of key a failing once is retried in place; the later jobs of key a run after
    its successful retry, in offset order, while key b's jobs run meanwhile."""
    env.create_topics("task")
    first = env.emit(key="a", fail="error", fail_attempts=1)
    later = [env.emit(key="a") for _ in range(3)]
    other = [env.emit(key="b") for _ in range(3)]
    env.flush()
    w = InProcess(env, monkeypatch, ordering="key-strict", concurrency=4)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= {first, *later, *other}, 40,
                 what="all jobs run")
    finally:
        w.stop()
    runs = env.lines()
    a = [x["id"] for x in runs if x["key"] == "a"]
    assert a == [first, *later], runs
    retried = next(x for x in runs if x["id"] == first)
    assert retried["attempt"] == 2
    assert max(x["end"] for x in runs if x["key"] == "b") < retried["start"]


@pytest.mark.parametrize("mode", ["release", "hold"])
def test_jobs_behind_a_dead_letter_run_or_follow_it(
        env: Env, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Once the job a key waits for is dead-lettered (3 attempts), the jobs behind it run in
    order (release) or are dead-lettered behind it in order with reason key_held (hold)."""
    env.create_topics("task")
    env.emit(key="a", fail="error", fail_attempts=9)  # dead-lettered after 3 attempts
    later = [env.emit(key="a") for _ in range(2)]
    env.flush()
    w = InProcess(env, monkeypatch, ordering="key-strict", key_dead_letter=mode)
    try:
        if mode == "release":
            wait_for(lambda: {x["id"] for x in env.lines()} >= set(later), 40,
                     what="jobs behind the dead letter run")
        dead = read_all(env, dlq_topic(env.topic()), idle=2,
                        timeout=40) if mode == "release" else wait_for(
            lambda: len(read_all(env, dlq_topic(env.topic()), idle=1)) == 3 and read_all(
                env, dlq_topic(env.topic()), idle=1), 40, what="three dead letters")
    finally:
        w.stop()
    reasons = [h.get(m.headers(), h.DLQ_REASON) for m in dead]  # type: ignore[union-attr]
    if mode == "release":
        assert reasons == ["max_attempts"]
        assert [x["id"] for x in env.lines()] == later
    else:
        assert reasons == ["max_attempts", "key_held", "key_held"]
        assert env.lines() == []
        assert [m.offset() for m in dead] == sorted(m.offset() for m in dead)  # type: ignore[union-attr]


def test_a_commit_position_held_too_long_stops_its_partition_until_the_retry(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition whose commit position a blocked job holds pauses once 10 x max_in_flight
    records sit at or above it (here 100), until that job's retry: then the rest runs, in
    order per key, nothing lost (so a crash never re-runs more than that)."""
    env.create_topics("task", partitions=1)
    first = env.emit(key="a", fail="retry:4", fail_attempts=1, partition=0)
    others = [env.emit(key="b", partition=0) for _ in range(300)]
    env.flush()
    w = InProcess(env, monkeypatch, ordering="key-strict", max_in_flight=10)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= {first, *others}, 40,
                 what="all jobs run")
    finally:
        w.stop()
    runs = env.lines()
    retried = next(x for x in runs if x["id"] == first)
    b = [x for x in runs if x["key"] == "b"]
    before = [x for x in b if x["end"] < retried["start"]]
    assert retried["attempt"] == 2
    assert 90 <= len(before) <= 130, len(before)  # flowed up to the bound, then waited
    assert [x["id"] for x in b] == others
