"""The inline watchdog (``inline.Watchdog``): while a slice runs past the hard limit it raises
the slice's flag; it sleeps without inline work and wakes on the next turn; and the executor
cuts a slice at the flag, handing the rest to the pool on its lane."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from streamjobs._worker import inline
from streamjobs._worker.inline import Watchdog
from streamjobs.events import JobsSucceeded, JobStarted
from tests.unit.test_inline_executor import _Part, _Setup, promoted, setup  # noqa: F401


def _until(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.002)
    return cond()


def test_a_slice_past_the_limit_raises_its_flag_and_only_its_own() -> None:
    flags = [False, False, False]
    watch = Watchdog(flags, 2, limit=0.05, tick=0.005)
    try:
        watch.arm()
        watch.started = time.perf_counter()
        time.sleep(0.03)
        assert flags == [False, False, False]  # under the limit
        assert _until(lambda: flags[2], 2.0)
        assert flags[:2] == [False, False]
    finally:
        watch.close()


def test_no_flag_between_slices() -> None:
    flags = [False]
    watch = Watchdog(flags, 0, limit=0.01, tick=0.002)
    try:
        watch.arm()
        time.sleep(0.1)  # armed, but no slice runs (started is 0.0)
        assert flags == [False]
    finally:
        watch.close()


def test_it_sleeps_when_idle_and_wakes_on_the_next_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inline, "IDLE_AFTER", 0.05)
    flags = [False]
    watch = Watchdog(flags, 0, limit=0.02, tick=0.002)
    try:
        watch.arm()
        assert _until(lambda: watch.asleep, 2.0)
        watch.started = time.perf_counter()  # a slice starts ...
        watch.arm()  # ... in a turn, which wakes the thread
        assert not watch.asleep
        assert _until(lambda: flags[0], 2.0)
    finally:
        watch.close()


def test_close_ends_the_thread() -> None:
    watch = Watchdog([False], 0, tick=0.002)
    time.sleep(0.01)
    watch.close()
    watch._thread.join(2.0)
    assert not watch._thread.is_alive()


def test_a_blocking_call_holds_the_loop_for_itself_and_the_rest_runs_in_the_pool(
        setup: _Setup) -> None:  # noqa: F811
    """Every call from job 2 on blocks 0.2 s: the poll thread runs jobs 0..2 and returns after
    about one blocking call (not 18 of them); the rest runs in the pool, in order, once each;
    the handler is demoted as blocked; every offset is completed once."""
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 20, {i: 0.2 for i in range(2, 20)}), 0)
    setup.submit(part, setup.jobs(20, 3), 20)  # queued behind on the lane
    t0 = time.monotonic()
    setup.ex.run_inline()
    held = time.monotonic() - t0
    assert held < 1.0, held  # one 0.2 s call (+ the watchdog's delay); 3.6 s before
    me = threading.current_thread().name
    assert setup.ran == [(0, me), (1, me), (2, me)]
    assert not part.pace.inline and part.pace.demotions == 1
    assert [(e.inline, e.reason) for e in setup.placed] == [(False, "blocked")]
    setup.wait(23)
    assert [i for i, _ in setup.ran] == list(range(23))
    assert all(name.startswith("sj-worker") for _, name in setup.ran[3:])
    assert _until(lambda: sum(1 for c in setup.completions if c[3]) == 1)  # one task, ended
    done = sorted(o for c in setup.completions for o in c[1])
    assert done == list(range(23))


def test_a_cut_on_the_poll_thread_does_not_stop_the_pool(setup: _Setup) -> None:  # noqa: F811
    """The flag is the poll thread's slot: a pool thread running a chunk meanwhile runs on."""
    pooled = _Part(promoted())
    pooled.pace.inline = False
    setup.submit(pooled, setup.jobs(100, 10, {i: 0.03 for i in range(100, 110)}), 100)
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 3, {1: 0.3}), 0)
    setup.ex.run_inline()
    assert not part.pace.inline
    setup.wait(13)
    assert sorted(i for i, _ in setup.ran if i >= 100) == list(range(100, 110))
    assert not any(setup.ex.halted[:-1])


def test_a_late_flag_of_the_last_slice_does_not_cut_the_next(setup: _Setup) -> None:  # noqa: F811
    """The flag raised as a slice ended (the watchdog looked just before its end) is spent:
    the next slice runs whole on the poll thread."""
    part = _Part(promoted())
    setup.submit(part, setup.jobs(0, 5), 0)
    setup.ex.halted[-1] = True
    setup.ex.run_inline()
    me = threading.current_thread().name
    assert setup.ran == [(i, me) for i in range(5)]
    assert part.pace.inline


def test_halt_stops_every_slot() -> None:
    """Shutdown (``Executor.halt``) raises every slot's flag, the poll thread's included."""
    s = _Setup()
    try:
        s.ex.halt()
        assert s.ex.stopping and all(s.ex.halted)
        part = _Part(promoted())
        s.submit(part, s.jobs(0, 3), 0)
        s.ex.run_inline()
        assert s.ran == []
    finally:
        s.ex.shutdown()


@pytest.mark.parametrize("listening", ["summaries", "each"])
def test_the_cut_stops_the_runs_with_listeners_too(listening: str) -> None:
    """With success summaries (``_run_summarised``) or per-job events (``_run_observed``) the
    slice is cut the same way: the poll thread is held for about one blocking call, the
    rest runs in the pool in order, every offset completes once."""
    s = _Setup()
    seen: list[object] = []
    if listening == "summaries":
        s.bus.subscribe(seen.append, JobsSucceeded)
    else:
        s.bus.subscribe(seen.append, JobStarted)
    try:
        part = _Part(promoted())
        part.single_type = "t" if listening == "summaries" else None
        part.partition = 0  # type: ignore[attr-defined]
        jobs = s.jobs(0, 12, {i: 0.2 for i in range(1, 12)})
        for ctx in jobs:
            ctx.created_at_ms = None
        t0 = time.monotonic()
        s.submit(part, jobs, 0)
        s.ex.run_inline()
        assert time.monotonic() - t0 < 1.0  # one 0.2 s call; 2.2 s if the slice ran on
        assert not part.pace.inline
        s.wait(12)
        assert [i for i, _ in s.ran] == list(range(12))
        assert _until(lambda: sum(1 for c in s.completions if c[3]) == 1)
        assert sorted(o for c in s.completions for o in c[1]) == list(range(12))
        assert seen
    finally:
        s.ex.shutdown()
