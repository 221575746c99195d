"""The executor's inline runs (``Executor.run_inline``): promoted chunks run on the calling
(poll) thread, within the turn's budget, the rest in the pool on the same lane, in order."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from streamjobs._retry import RetryPolicy
from streamjobs._worker import executor as executor_module
from streamjobs._worker import inline
from streamjobs._worker.executor import Executor
from streamjobs._worker.inline import Pace
from streamjobs._worker.ordering import Lanes
from streamjobs.events import EventBus, InlineChanged
from tests.unit.test_timeouts import _Ctx


class _Part:
    """What the executor reads of a partition."""

    def __init__(self, pace: Pace) -> None:
        self.topic = "t"
        self.revoked = False
        self.single_type = None  # no success summaries: the plain chunk runner
        self.pace = pace


class _Setup:
    def __init__(self) -> None:
        self.bus = EventBus()
        self.placed: list[InlineChanged] = []
        self.bus.subscribe(self.placed.append, InlineChanged)
        self.lanes: Lanes[Any] = Lanes()
        self.completions: deque[Any] = deque()
        self.ex = Executor(2, self.bus, self.lanes, self.completions, use_async=False)
        self.ran: list[tuple[int, str]] = []  # (job number, thread name)

    def jobs(self, first: int, n: int, sleep: dict[int, float] | None = None) -> list[Any]:
        def run(i: int) -> Any:
            def handler(payload: Any, ctx: Any) -> None:
                if sleep and i in sleep:
                    time.sleep(sleep[i])
                self.ran.append((i, threading.current_thread().name))
            return handler
        return [_Ctx(run(i), None, None) for i in range(first, first + n)]

    def submit(self, part: _Part, jobs: list[Any], first: int) -> None:
        chunk = (jobs, range(first, first + len(jobs)))
        if self.lanes.offer(part, chunk):
            self.ex.submit(part, part, chunk, False)

    def wait(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.ran) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.ran) >= n, self.ran


@pytest.fixture
def setup() -> Iterator[_Setup]:
    s = _Setup()
    yield s
    s.ex.shutdown()


def promoted(per_job: float = 1e-6, under: float = 20e-6) -> Pace:
    pace = Pace("t", under)
    pace.inline = True
    pace.per_job = per_job
    return pace


def test_promoted_chunks_wait_for_run_inline_and_run_on_its_thread(setup: _Setup) -> None:
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 5), 0)
    time.sleep(0.05)
    assert setup.ran == [] and setup.ex.inline_waiting  # nothing runs before the loop's call
    setup.ex.run_inline()
    me = threading.current_thread().name
    assert setup.ran == [(i, me) for i in range(5)]
    assert not setup.ex.inline_waiting
    assert [(list(c[1]), c[3]) for c in setup.completions] == [([0, 1, 2, 3, 4], False),
                                                                ([], True)]


def test_past_the_turn_budget_the_rest_runs_in_the_pool_on_its_lane(
        setup: _Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "TURN_BUDGET", 0.004)
    part = _Part(promoted(per_job=0.001, under=0.01))
    setup.submit(part, setup.jobs(0, 20, {i: 0.001 for i in range(20)}), 0)
    setup.submit(part, setup.jobs(20, 5), 20)  # queued behind on the lane
    setup.ex.run_inline()
    setup.wait(20)
    # The pool task, done with the rest, finds the next chunk on the lane: the handler is
    # still promoted, so the lane goes back to the poll thread's next turn.
    deadline = time.monotonic() + 5
    while not setup.ex.inline_waiting and time.monotonic() < deadline:
        time.sleep(0.005)
    setup.ex.run_inline()
    assert [i for i, _ in setup.ran] == list(range(25))  # in order across both hand-overs
    me = threading.current_thread().name
    names = [name for _, name in setup.ran]
    inline_ran = names.index("sj-worker-0") if "sj-worker-0" in names else names.index(
        "sj-worker-1")
    assert 0 < inline_ran < 10 and set(names[:inline_ran]) == {me}
    assert all(name.startswith("sj-worker") for name in names[inline_ran:20])
    assert set(names[20:]) == {me}
    assert part.pace.inline  # not demoted: it kept its pace
    assert sum(1 for c in setup.completions if c[3]) == 1  # one task, ended once


def test_a_blocking_slice_demotes_and_later_chunks_go_to_the_pool(setup: _Setup) -> None:
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 4, {1: inline.HARD_LIMIT * 1.2}), 0)
    setup.ex.run_inline()
    assert not part.pace.inline and part.pace.demotions == 1
    assert [(e.inline, e.reason) for e in setup.placed] == [(False, "blocked")]
    setup.submit(part, setup.jobs(4, 3), 4)
    assert not setup.ex.inline_waiting
    setup.wait(7)
    assert [i for i, _ in setup.ran] == list(range(7))
    assert all(name.startswith("sj-worker") for _, name in setup.ran[4:])


def test_a_lane_busy_in_the_pool_hands_its_next_chunks_over_once_promoted(
        setup: _Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inline, "PROMOTE_JOBS", 3)
    part = _Part(Pace("t", 0.01))
    release = threading.Event()

    def gate(payload: Any, ctx: Any) -> None:
        release.wait(5)
        setup.ran.append((-1, threading.current_thread().name))

    first = [_Ctx(gate, None, None), *setup.jobs(0, 3)]
    setup.submit(part, first, 0)
    setup.submit(part, setup.jobs(3, 4), 4)  # queued on the busy lane
    release.set()
    setup.wait(4)
    deadline = time.monotonic() + 5
    while not setup.ex.inline_waiting and time.monotonic() < deadline:
        time.sleep(0.005)
    assert part.pace.inline and setup.ex.inline_waiting
    assert [(e.inline, e.reason) for e in setup.placed] == [(True, "short")]
    setup.ex.run_inline()
    me = threading.current_thread().name
    assert setup.ran[4:] == [(i, me) for i in range(3, 7)]
    assert sum(1 for c in setup.completions if c[3]) == 1  # one task, moved, ended once


def test_spill_hands_waiting_inline_tasks_to_the_pool(setup: _Setup) -> None:
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 3), 0)
    setup.ex.spill()
    assert not setup.ex.inline_waiting
    setup.wait(3)
    assert all(name.startswith("sj-worker") for _, name in setup.ran)


def test_ctrl_c_in_an_inline_handler_interrupts_the_worker_not_the_job(setup: _Setup) -> None:
    """Python's default SIGINT handler raises KeyboardInterrupt in the main thread: a
    promoted handler running there must let it through (the worker stops, as when it
    arrives in the poll loop), not route it as the job's failure; in the pool, where no
    signal arrives, a handler raising it is a failure like any other."""
    def interrupted(payload: Any, ctx: Any) -> None:
        raise KeyboardInterrupt
    part = _Part(promoted())
    chunk = ([_Ctx(interrupted, None, None)], range(0, 1))
    assert setup.lanes.offer(part, chunk)
    setup.ex.submit(part, part, chunk, False)
    with pytest.raises(KeyboardInterrupt):
        setup.ex.run_inline()
    assert not any(c[2] for c in setup.completions)  # no failed job reported

    pooled = _Part(Pace("t", 20e-6))  # not promoted: runs on a pool thread
    ctx = _Ctx(interrupted, None, None)
    ctx._job = type("J", (), {"timeout_s": None, "retry": RetryPolicy(),
                              "permanent_errors": ()})()
    chunk = ([ctx], range(5, 6))
    assert setup.lanes.offer(pooled, chunk)
    setup.ex.submit(pooled, pooled, chunk, False)
    deadline = time.monotonic() + 5
    while not any(c[2] for c in setup.completions) and time.monotonic() < deadline:
        time.sleep(0.005)
    failed = [f for c in setup.completions if c[2] for f in c[2]]
    assert [f[1].error_class for f in failed] == ["KeyboardInterrupt"]
