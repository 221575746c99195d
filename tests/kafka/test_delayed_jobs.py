"""Delayed jobs (`emit(..., delay=...)`) reuse the retry tiers: jobs with mixed delays run in
due order, never before their due time, and a long delay never holds back a short one."""

from __future__ import annotations

import time

import pytest

from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from tests.conftest import wait_for

from .worker_support import SCHEMAS, Env, InProcess, env_fixture  # noqa: F401

# Lateness allowed in this test; the benchmark (bench/retry_lateness.py) measures the real
# distribution. Generous because the CI machine is small and shared.
BOUND_MS = 2500


def test_mixed_delays_run_in_due_order_never_early(env: Env,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: jobs emitted with delays 12 s, 1 s, 5 s, 0 s, 3 s, 8 s (in that emit order) each run
    at or after its sj-due-at, within the lateness bound, in due order; the 12 s job emitted
    first does not hold back the 1 s job."""
    env.create_topics("task", partitions=1)
    catalogue = Catalogue.load(SCHEMAS, topic_prefix=env.prefix)
    delays = [12, 1, 5, 0, 3, 8]
    ids: dict[str, float] = {}
    with Producer(catalogue, env.kafka) as producer:
        for i, d in enumerate(delays):
            jid = f"d{i}-{d}s"
            producer.emit("task", {"id": jid, "key": "k", "fail": "", "fail_attempts": 0,
                                   "sleep_ms": 0}, delay=d or None)
            ids[jid] = d
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= set(ids), 40, what="delayed jobs")
    finally:
        w.stop()
    runs = {x["id"]: x for x in env.lines()}
    for jid, run in runs.items():
        if ids[jid] == 0:
            continue
        due = int(run["due_at"])
        start_ms = run["start"] * 1000
        assert start_ms >= due, f"{jid} ran {due - start_ms:.0f} ms early"
        assert start_ms - due < BOUND_MS, f"{jid} ran {start_ms - due:.0f} ms late"
    order = [jid for jid, _ in sorted(runs.items(), key=lambda kv: kv[1]["start"])]
    assert order == sorted(ids, key=lambda j: ids[j]), order


def test_delay_lands_on_a_tier_and_is_late_only_within_the_bound(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: a job delayed by an arbitrary 2.5 s (no tier of that size) is re-routed through
    smaller tiers and still runs at or after its due time, within the bound."""
    env.create_topics("task", partitions=1)
    catalogue = Catalogue.load(SCHEMAS, topic_prefix=env.prefix)
    t0 = time.time()
    with Producer(catalogue, env.kafka) as producer:
        producer.emit("task", {"id": "odd", "key": "k", "fail": "", "fail_attempts": 0,
                               "sleep_ms": 0}, delay=2.5)
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: env.lines(), 30, what="the delayed job")
    finally:
        w.stop()
    run = env.lines()[0]
    assert run["start"] - t0 >= 2.5
    assert 0 <= run["start"] * 1000 - int(run["due_at"]) < BOUND_MS
