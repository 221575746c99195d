"""Async handlers on the executor's event loop: at most ``concurrency`` places, each running
queued jobs back to back (one asyncio task per place, not per job), yielding to the loop now and
then, and one completion per job whatever its outcome."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from streamjobs._retry import RetryPolicy
from streamjobs._worker import App
from streamjobs._worker.executor import SLOT_YIELD_EVERY, Executor
from streamjobs._worker.ordering import Lanes
from streamjobs.events import EventBus


class _Part:
    """What the executor reads of a partition."""

    def __init__(self) -> None:
        self.topic = "t"
        self.partition = 0
        self.revoked = False
        self.single_type = "t"


class _Job:
    timeout_s = None
    retry = RetryPolicy(max_attempts=1)
    permanent_errors = ()


class _Ctx:
    def __init__(self, func: Any, offset: int) -> None:
        app = App("unused")
        app.job("t")(func)
        self._handler = app.handlers["t"]
        self._job = _Job()
        self.payload: dict[str, Any] = {"n": offset}
        self.job_id, self.job_type, self.topic = f"id{offset}", "t", "t"
        self.partition, self.offset, self.attempt = 0, offset, 1


def _run(concurrency: int, func: Callable[..., Any], n: int) -> list[Any]:
    """Submit ``n`` one-job unordered chunks at once; the completions once all ``n`` ended."""
    completions: deque[Any] = deque()
    ex = Executor(concurrency, EventBus(), Lanes(), completions, use_async=True)
    part = _Part()
    try:
        for i in range(n):
            ex.submit(part, None, ([_Ctx(func, i)], [i]), True)
        deadline = time.monotonic() + 10
        while sum(c[3] for c in completions) < n and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        ex.shutdown()
    return list(completions)


def test_places_bound_the_jobs_at_once_and_run_queued_jobs_in_their_own_task() -> None:
    running = [0, 0]  # now, peak
    tasks: set[Any] = set()  # the tasks themselves: an id could be reused
    lock = threading.Lock()

    async def wait(payload: dict[str, Any], ctx: Any) -> None:
        tasks.add(asyncio.current_task())
        with lock:
            running[0] += 1
            running[1] = max(running)
        await asyncio.sleep(0.01)
        with lock:
            running[0] -= 1

    done = _run(3, wait, 30)
    assert running[1] == 3
    assert len(tasks) == 3  # 30 jobs, one task per place
    assert sorted(o for c in done for o in c[1]) == list(range(30))
    assert all(c[2] is None and c[3] for c in done)


def test_a_place_yields_to_the_loop_when_its_handlers_never_suspend() -> None:
    ran: list[int] = []
    seen_at: list[int] = []

    async def quick(payload: dict[str, Any], ctx: Any) -> None:
        if not ran:  # the first job: when does the loop get a turn?
            asyncio.get_running_loop().call_soon(lambda: seen_at.append(len(ran)))
        ran.append(payload["n"])

    n = 3 * SLOT_YIELD_EVERY
    done = _run(1, quick, n)
    assert ran == list(range(n))  # one place: queue order
    assert seen_at and seen_at[0] <= SLOT_YIELD_EVERY + 1
    assert len(done) == n


def test_a_failed_job_reports_its_failure_and_its_place_runs_on() -> None:
    async def flaky(payload: dict[str, Any], ctx: Any) -> None:
        await asyncio.sleep(0)
        if payload["n"] == 2:
            raise ValueError("boom")

    done = _run(1, flaky, 5)
    failed = [c for c in done if c[2]]
    assert len(failed) == 1
    ctx, failure, decision = failed[0][2][0]
    assert ctx.offset == 2 and failure.error_class == "ValueError"
    assert decision.reason == "max_attempts"
    assert sorted(o for c in done for o in c[1]) == [0, 1, 3, 4]
    assert all(c[3] for c in done)  # each job's task ended (one per job for the poll thread)
