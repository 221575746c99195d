"""Inline handlers (_worker/inline.py): a short sync handler is promoted to the poll thread,
runs every job once in partition order and commits; one that turns slow is demoted and the
other partitions keep being served."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streamjobs._worker import App, JobContext, Worker, WorkerSettings
from streamjobs.events import EventBus, InlineChanged, LoopAlive
from tests.conftest import wait_for

from .worker_support import SCHEMAS, Env, WorkerThread, env_fixture  # noqa: F401

# (partition, offset, payload id, ran on the poll thread, start, end, key)
Row = tuple[int, int, str, bool, float, float, bytes | None]


class Run(WorkerThread):
    """A worker of an app with one fast ``task`` handler (``sleep_ms`` honoured), in a
    thread; every job's row is kept in memory."""

    def __init__(self, env: Env, **settings: Any) -> None:
        self.rows: list[Row] = []
        self.starts: dict[str, float] = {}  # payload id -> its call's start
        self.alive: list[float] = []
        self.placed: list[InlineChanged] = []
        app = App(SCHEMAS, name="tests-inline", topic_prefix=env.prefix)

        @app.job("task")
        def task(payload: dict[str, Any], ctx: JobContext) -> None:
            start = self.starts[payload["id"]] = time.monotonic()
            if payload["sleep_ms"]:
                time.sleep(payload["sleep_ms"] / 1000)
            if payload["key"] == "parent":
                ctx.emit("task", {"id": "c-" + payload["id"], "key": "child"})
            inline = not threading.current_thread().name.startswith("sj-")
            self.rows.append((ctx.partition, ctx.offset, payload["id"], inline, start,
                              time.monotonic(), ctx.key))

        bus = EventBus()
        bus.subscribe(lambda e: self.alive.append(time.monotonic()), LoopAlive)
        bus.subscribe(self.placed.append, InlineChanged)
        self._start(Worker(app, WorkerSettings(group_id=env.group, job_types=("task",),
                                               commit_interval=0.2, **settings),
                           env.kafka, bus))


def _emit(env: Env, n: int, partitions: int = 3, keys: int = 0, **payload: Any) -> list[str]:
    ids = [env.emit(partition=i % partitions, key=f"k{i % keys}" if keys else "", **payload)
           for i in range(n)]
    env.flush()
    return ids


@pytest.mark.parametrize("ordering", ["partition", "key", "unordered"])
def test_a_fast_handler_is_promoted_and_runs_every_job_once_in_order(
        env: Env, ordering: str) -> None:
    """A no-op handler starts in the pool, is promoted to the poll thread after its first
    jobs, and from then runs there; every job runs exactly once, each partition's (key's)
    jobs in offset order across the promotion (but with ``unordered``), and the committed
    offsets reach the end."""
    env.create_topics("task", partitions=3)
    keys = 7 if ordering == "key" else 0
    ids = _emit(env, 1500, keys=keys)
    w = Run(env, ordering=ordering)
    try:
        wait_for(lambda: len(w.rows) >= 1500, 30, what="the first jobs")
        ids += _emit(env, 1500, keys=keys)  # taken after the promotion
        wait_for(lambda: len(w.rows) >= 3000, 30, what="all jobs")
        ends = env.end_offsets(env.topic())
        wait_for(lambda: env.committed(env.topic()) == ends, 15, what="commit to the end")
        pace = w.worker.paces["task"]
    finally:
        w.stop()
    rows = list(w.rows)
    assert sorted(r[2] for r in rows) == sorted(ids)  # exact: once each
    for p in range(3):
        assert len([r for r in rows if r[0] == p]) == 1000
        for key in {r[6] for r in rows} if ordering != "unordered" else ():
            offsets = [r[1] for r in rows if r[0] == p and (ordering == "partition"
                                                             or r[6] == key)]
            assert offsets == sorted(offsets)
    # (A loaded box may stall a slice long enough for a demotion: not asserted here.)
    assert pace.promotions >= 1
    assert (w.placed[0].job_type, w.placed[0].inline, w.placed[0].reason) == (
        "task", True, "short")
    assert not rows[0][3]  # measured in the pool first
    assert sum(r[3] for r in rows[1500:]) >= 500  # then on the poll thread


def test_a_handler_that_turns_slow_is_demoted_and_the_loop_serves_other_partitions(
        env: Env) -> None:
    """After its promotion a handler's job blocks (400 ms, past the 50 ms hard limit) on the
    poll thread: it is demoted, so its next slow jobs run in the pool, the loop stays alive,
    and jobs of the other partitions emitted after them finish while they still run; all
    commit."""
    env.create_topics("task", partitions=3)
    w = Run(env)
    try:
        _promote(env, w)
        pace = w.worker.paces["task"]
        demoted = pace.demotions
        n = len(w.rows)
        env.emit(partition=0, sleep_ms=400)
        env.flush()
        wait_for(lambda: len(w.rows) >= n + 1, 10, what="the first slow job")
        wait_for(lambda: pace.demotions == demoted + 1, 5, what="demotion")
        slow = [env.emit(partition=0, sleep_ms=400) for _ in range(4)]
        env.flush()
        time.sleep(0.2)  # the slow jobs are taken first
        fast = _emit(env, 200, partitions=3)
        fast = [i for k, i in enumerate(fast) if k % 3 != 0]  # partitions 1 and 2
        wait_for(lambda: len(w.rows) >= n + 205, 30, what="all jobs")
        ends = env.end_offsets(env.topic())
        wait_for(lambda: env.committed(env.topic()) == ends, 15, what="commit to the end")
    finally:
        w.stop()
    rows = {r[2]: r for r in w.rows}
    assert len(w.rows) == n + 205
    assert not any(rows[i][3] for i in slow)  # demoted: in the pool
    last_slow = max(rows[i][5] for i in slow)
    assert max(rows[i][5] for i in fast) < last_slow  # not stuck behind partition 0
    slow_start = min(rows[i][4] for i in slow)
    assert any(slow_start < t < last_slow for t in w.alive)  # the loop turned meanwhile
    assert any(e.reason == "blocked" and not e.inline and e.per_job_s > 0.3 for e in w.placed)


def _promote(env: Env, w: Run) -> None:
    pace = w.worker.paces["task"]
    for _ in range(5):  # a loaded box may demote it once (then it waits a back-off)
        n = len(w.rows) + 1500
        _emit(env, 1500)
        wait_for(lambda: len(w.rows) >= n, 30, what="fast jobs")  # noqa: B023
        if pace.inline:
            return
        time.sleep(2)
    assert pace.inline


def test_a_handler_whose_calls_start_blocking_holds_the_loop_for_one_call(env: Env) -> None:
    """A promoted handler's calls suddenly block (300 ms each, 16 in a row on partition 0):
    the poll loop is held for about the one call that blocks, not its slice (the watchdog
    cuts it), so jobs of another partition emitted during that call finish within 1.5 s and
    the loop beats within 2 s (not after up to 16 x 300 ms); the blocking jobs run once
    each, in order (the rest of the slice in the pool, on its lane), the handler is demoted
    as blocked, and all commit."""
    env.create_topics("task", partitions=3)
    w = Run(env)
    try:
        _promote(env, w)
        pace = w.worker.paces["task"]
        n = len(w.rows)
        slow = [env.emit(partition=0, sleep_ms=300) for _ in range(16)]
        env.flush()
        wait_for(lambda: slow[0] in w.starts, 10, what="the first blocking call")
        fast = _emit(env, 100, partitions=2)  # partitions 0 and 1 ...
        fast = [i for k, i in enumerate(fast) if k % 2]  # ... keep 1's: not behind slow
        wait_for(lambda: len(w.rows) >= n + 16 + 100, 30, what="all jobs")
        ends = env.end_offsets(env.topic())
        wait_for(lambda: env.committed(env.topic()) == ends, 15, what="commit to the end")
    finally:
        w.stop()
    rows = {r[2]: r for r in w.rows}
    assert len(w.rows) == n + 116 and len(rows) == len(w.rows)  # once each
    blocked_at = w.starts[slow[0]]
    assert max(rows[i][5] for i in fast) - blocked_at < 1.5  # 0.3 s; seconds if the slice ran
    assert any(blocked_at < t < blocked_at + 2.0 for t in w.alive)
    p0 = [r[1] for r in w.rows if r[0] == 0]
    assert p0 == sorted(p0)
    assert [rows[i][1] for i in slow] == sorted(rows[i][1] for i in slow)
    assert sum(rows[i][3] for i in slow) <= 1  # at most the first on the poll thread
    assert not pace.inline or pace.promotions > 1
    assert any(e.reason == "blocked" and not e.inline for e in w.placed)


class Lean(WorkerThread):
    """A worker of one no-op ``task`` handler (``sleep_ms`` honoured) that keeps nothing per
    job but a count: fast enough for its inline slices to be timed as a whole."""

    def __init__(self, env: Env, bus: EventBus) -> None:
        self.count = 0
        app = App(SCHEMAS, name="tests-inline", topic_prefix=env.prefix)

        @app.job("task")
        def task(payload: dict[str, Any], ctx: JobContext) -> None:
            if payload["sleep_ms"]:
                time.sleep(payload["sleep_ms"] / 1000)
            self.count += 1

        self._start(Worker(app, WorkerSettings(group_id=env.group, job_types=("task",),
                                               commit_interval=0.2), env.kafka, bus))


def test_metrics_of_inline_slices_count_each_job_and_show_a_call_that_blocked(
        env: Env) -> None:
    """With the metrics listener, a promoted no-op handler's slices are timed as a whole (a
    clock reading per slice, none per job); the histograms still count every job once, and
    one call that blocked for 5 ms among them shows as one slow job."""
    from prometheus_client import CollectorRegistry

    from streamjobs.events import JobsSucceeded, RunDurations
    from streamjobs.listeners import MetricsListener

    env.create_topics("task", partitions=1)
    _emit(env, 5000, partitions=1)
    bus = EventBus()
    reg = CollectorRegistry()
    MetricsListener(reg).attach(bus)
    runs: list[JobsSucceeded] = []
    bus.subscribe(runs.append, JobsSucceeded)
    w = Lean(env, bus)

    def value(name: str, **labels: str) -> float:
        got = reg.get_sample_value(name, {"job_type": "task", **labels})
        assert got is not None, name
        return got

    def summarised() -> int:
        return sum(len(e.durations_s) for e in list(runs))

    try:
        wait_for(lambda: summarised() >= 5000, 30, what="the first jobs")
        before = len(runs)  # from here on: promoted, its pace measured inline
        fast_before = value("streamjobs_job_duration_seconds_bucket", le="0.0025")
        _emit(env, 3000, partitions=1)
        env.emit(partition=0, sleep_ms=5)
        _emit(env, 3000, partitions=1)
        wait_for(lambda: summarised() >= 11001, 30, what="all jobs")
    finally:
        w.stop()

    assert w.count == 11001
    assert value("streamjobs_job_duration_seconds_count") == 11001
    assert value("streamjobs_job_end_to_end_seconds_count") == 11001
    assert value("streamjobs_jobs_total", outcome="succeeded") == 11001
    later = [e.durations_s for e in runs[before:]]
    assert all(isinstance(d, RunDurations) for d in later)
    whole = [d for d in later if not d.timed_each]  # type: ignore[attr-defined]
    assert sum(map(len, whole)) >= 1000  # timed as a whole
    blocked = [d for d in later if d.total >= 0.005]  # type: ignore[attr-defined]
    assert blocked and not blocked[0].timed_each  # type: ignore[attr-defined]
    # Of the 6,001 jobs, the blocked call is one past 2.5 ms (a loaded box may stall more).
    fast = value("streamjobs_job_duration_seconds_bucket", le="0.0025") - fast_before
    assert 6001 - 5 <= fast <= 6001 - 1
    assert value("streamjobs_job_duration_seconds_sum") >= 0.005


def test_zero_never_inlines(env: Env) -> None:
    """``inline_under=0``: every job runs in the pool, none on the poll thread."""
    env.create_topics("task", partitions=3)
    _emit(env, 1500)
    w = Run(env, inline_under=0)
    try:
        wait_for(lambda: len(w.rows) >= 1500, 30, what="all jobs")
    finally:
        w.stop()
    assert w.worker.paces == {}
    assert not any(r[3] for r in w.rows)


def test_follow_ups_emitted_inline_are_sent_before_their_parents_commit(env: Env) -> None:
    """A promoted handler's ``ctx.emit`` works on the poll thread: every parent's follow-up
    is written once, and every offset (parents' and children's) is committed."""
    env.create_topics("task", partitions=3)
    # The first emit builds the encoder (tens of ms): in the pool, before the promotion.
    ids = [env.emit(partition=0, key="parent")]
    ids += _emit(env, 1499)
    w = Run(env, inline_under=5000)  # emit's encoding is not 20 µs cheap
    try:
        wait_for(lambda: len(w.rows) >= 1501, 30, what="the first jobs")
        parents = [env.emit(partition=i % 3, key="parent") for i in range(300)]
        env.flush()
        wait_for(lambda: len(w.rows) >= 2101, 30, what="parents and children")
        ends = env.end_offsets(env.topic())
        assert sum(ends.values()) == 2101
        wait_for(lambda: env.committed(env.topic()) == ends, 15, what="commit to the end")
    finally:
        w.stop()
    rows = list(w.rows)
    assert sorted(r[2] for r in rows) == sorted(
        ids + parents + ["c-" + i for i in [ids[0], *parents]])
    assert w.worker.paces["task"].promotions >= 1
    assert any(r[3] for r in rows if r[2] in parents)  # emitted on the poll thread
