"""Running handlers: a bounded pool of threads for sync handlers, one asyncio loop (in its
own thread) for async ones.

The unit of work is a *chunk*: a lane's records, run one after the other by one task. At high
rates a chunk is a whole consume batch of a partition, so the per-record cost is the handler
call and nothing else: no future, no lock, no event object unless a listener wants it. Each
chunk hands its outcome back to the poll thread as ONE completion tuple on a deque (appends
are atomic), which the poll thread drains every loop iteration.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from ..events import EventBus, JobFailed, JobStarted, JobSucceeded
from .context import JobContext
from .failures import Decision, Failure, decide, describe
from .ordering import Lanes

__all__ = ["Completion", "Executor", "FailedJob"]

# (ctx, failure, decision): a handler raised; the poll thread produces the retry/DLQ record.
FailedJob = tuple[JobContext, Failure, Decision]
# (part, finished offsets, failed jobs or None, task ended)
Completion = tuple[Any, list[int], list[FailedJob] | None, bool]


class Executor:
    def __init__(self, concurrency: int, bus: EventBus, lanes: Lanes[JobContext],
                 completions: deque[Completion], *, use_async: bool) -> None:
        self.concurrency = concurrency
        self.bus = bus
        self.lanes = lanes
        self.completions = completions
        self.stopping = False
        self._tasks: queue.SimpleQueue[tuple[Any, Hashable | None, list[JobContext]] | None] = (
            queue.SimpleQueue())
        self._threads = [threading.Thread(target=self._thread_main, name=f"sj-worker-{i}",
                                          daemon=True) for i in range(concurrency)]
        for t in self._threads:
            t.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        if use_async:
            self._loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(target=self._loop_main, args=(ready,), name="sj-asyncio",
                             daemon=True).start()
            ready.wait()

    # -- submission (poll thread) -------------------------------------------------------------

    def submit(self, part: Any, lane: Hashable | None, jobs: list[JobContext],
               is_async: bool) -> None:
        """Run ``jobs`` in order as one task. ``lane`` is None for unordered chunks; otherwise
        the caller won ``lanes.offer(lane, ...)`` and the task keeps the lane until idle."""
        if is_async and self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._run_async(part, lane, jobs), self._loop)
        else:
            self._tasks.put((part, lane, jobs))

    def shutdown(self) -> None:
        self.stopping = True
        for _ in self._threads:
            self._tasks.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- sync ---------------------------------------------------------------------------------

    def _thread_main(self) -> None:
        get = self._tasks.get
        while True:
            task = get()
            if task is None:
                return
            self._run_sync(*task)

    def _run_sync(self, part: Any, lane: Hashable | None, jobs: list[JobContext]) -> None:
        bus = self.bus
        want_started = bus.wants(JobStarted)
        want_ok = bus.wants(JobSucceeded)
        want_failed = bus.wants(JobFailed)
        timed = want_ok or want_failed
        clock = time.perf_counter
        loop = self._loop
        while True:
            done: list[int] = []
            failed: list[FailedJob] | None = None
            early = False
            for ctx in jobs:
                if part.revoked or self.stopping:
                    early = True
                    break
                handler = ctx._handler
                if want_started:
                    bus.emit(JobStarted(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                        ctx.offset, ctx.attempt))
                t0 = clock() if timed else 0.0
                try:
                    if handler.is_async:
                        assert loop is not None
                        asyncio.run_coroutine_threadsafe(handler.func(ctx.payload, ctx),
                                                         loop).result()
                    else:
                        handler.func(ctx.payload, ctx)
                except BaseException as exc:
                    if failed is None:
                        failed = []
                    failed.append(self._failed(ctx, exc, clock() - t0 if timed else 0.0,
                                               want_failed))
                else:
                    done.append(ctx.offset)
                    if want_ok:
                        bus.emit(JobSucceeded(ctx.job_id, ctx.job_type, ctx.topic,
                                              ctx.partition, ctx.offset, ctx.attempt,
                                              clock() - t0, ctx.created_at_ms))
            nxt = None
            if lane is not None:
                if early:
                    self.lanes.release(lane)
                else:
                    nxt = self.lanes.take(lane)
            self.completions.append((part, done, failed, nxt is None))
            if nxt is None:
                return
            jobs = nxt

    # -- async --------------------------------------------------------------------------------

    def _loop_main(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        self._sem = asyncio.Semaphore(self.concurrency)
        ready.set()
        self._loop.run_forever()

    async def _run_async(self, part: Any, lane: Hashable | None,
                         jobs: list[JobContext]) -> None:
        assert self._sem is not None
        bus = self.bus
        want_started = bus.wants(JobStarted)
        want_ok = bus.wants(JobSucceeded)
        want_failed = bus.wants(JobFailed)
        clock = time.perf_counter
        async with self._sem:
            while True:
                done: list[int] = []
                failed: list[FailedJob] | None = None
                early = False
                for ctx in jobs:
                    if part.revoked or self.stopping:
                        early = True
                        break
                    if want_started:
                        bus.emit(JobStarted(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                            ctx.offset, ctx.attempt))
                    t0 = clock()
                    try:
                        await ctx._handler.func(ctx.payload, ctx)
                    except BaseException as exc:
                        if failed is None:
                            failed = []
                        failed.append(self._failed(ctx, exc, clock() - t0, want_failed))
                    else:
                        done.append(ctx.offset)
                        if want_ok:
                            bus.emit(JobSucceeded(ctx.job_id, ctx.job_type, ctx.topic,
                                                  ctx.partition, ctx.offset, ctx.attempt,
                                                  clock() - t0, ctx.created_at_ms))
                nxt = None
                if lane is not None:
                    if early:
                        self.lanes.release(lane)
                    else:
                        nxt = self.lanes.take(lane)
                self.completions.append((part, done, failed, nxt is None))
                if nxt is None:
                    return
                jobs = nxt

    # -- failures -----------------------------------------------------------------------------

    def _failed(self, ctx: JobContext, exc: BaseException, duration: float,
                want_failed: bool) -> FailedJob:
        job = ctx._job
        failure = describe(exc)
        decision = decide(exc, ctx.attempt, job.retry, job.permanent_errors)
        if want_failed:
            self.bus.emit(JobFailed(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                    ctx.offset, ctx.attempt, duration, failure.error_class,
                                    failure.message, decision.will_retry))
        return ctx, failure, decision


Clock = Callable[[], float]
