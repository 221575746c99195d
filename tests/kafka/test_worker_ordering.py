"""Ordering modes: per partition (default) and per key; async handlers."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from tests.conftest import wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def _overlaps(runs: list[dict]) -> bool:
    runs = sorted(runs, key=lambda x: x["start"])
    return any(b["start"] < a["end"] for a, b in itertools.pairwise(runs))


def test_per_key_ordering(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """ordering=key: jobs of one key run one at a time in offset order; different keys of the
    same partition run concurrently."""
    env.create_topics("task", partitions=1)
    for i in range(8):
        for key in ("a", "b", "c"):
            env.emit(key=key, sleep_ms=60, id=f"{key}{i}")
    env.flush()
    w = InProcess(env, monkeypatch, ordering="key", concurrency=4)
    try:
        wait_for(lambda: len(env.lines()) >= 24, 30, what="all jobs")
    finally:
        w.stop()
    by_key: dict[str, list[dict]] = defaultdict(list)
    for run in env.lines():
        by_key[run["key"]].append(run)
    for runs in by_key.values():
        assert [r["offset"] for r in runs] == sorted(r["offset"] for r in runs)
        assert not _overlaps(runs)
    assert _overlaps(env.lines())  # keys did run side by side


def test_per_partition_ordering_with_async_handler(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """ordering=partition (default), async handler: one job of a partition at a time, in
    offset order; partitions run concurrently on the asyncio loop."""
    env.create_topics("atask")
    for i in range(30):
        env.emit("atask", key=f"k{i}", sleep_ms=40)
    env.flush()
    w = InProcess(env, monkeypatch, job_types=("atask",), concurrency=4)
    try:
        wait_for(lambda: len(env.lines()) >= 30, 30, what="all jobs")
    finally:
        w.stop()
    by_part: dict[int, list[dict]] = defaultdict(list)
    for run in env.lines():
        by_part[run["partition"]].append(run)
    assert len(by_part) > 1
    for runs in by_part.values():
        assert [r["offset"] for r in runs] == sorted(r["offset"] for r in runs)
        assert not _overlaps(runs)
    assert _overlaps(env.lines())
