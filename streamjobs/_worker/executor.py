"""Running handlers: a bounded pool of threads for sync handlers, one asyncio loop (in its
own thread) for async ones, and the poll thread itself for short sync handlers once they
have proved short (``run_inline``; the policy is inline.py's).

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
from collections.abc import Callable, Hashable, Sequence
from operator import attrgetter
from typing import Any

from ..errors import JobTimeout
from ..events import (
    EventBus,
    InlineChanged,
    JobFailed,
    JobsSucceeded,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    RunDurations,
)
from .context import JobContext, RecordContext, bind_thread, bound
from .failures import Decision, Failure, decide, describe
from .inline import HARD_LIMIT, TURN_BUDGET, Pace, Watchdog
from .keyhold import HELD_DECISION, HELD_FAILURE, InPlace, KeyHeld
from .lanes import LaneQueue, RankedDeque, Ranks
from .ordering import Chunk, Lanes
from .stuck import StuckSlots, timeout_of

__all__ = ["Chunk", "Completion", "Executor", "FailedJob"]

# (ctx, failure, decision): a handler raised; the poll thread produces the retry/DLQ record.
FailedJob = tuple[JobContext, Failure, Decision]
# (part, finished offsets, failed jobs or None, task ended, jobs that succeeded when the
# status of successes is recorded (``record_ok``) else None)
Completion = tuple[Any, Sequence[int], list[FailedJob] | None, bool, list[JobContext] | None]


class Executor:
    def __init__(self, concurrency: int, bus: EventBus, lanes: Lanes[Chunk],
                 completions: deque[Completion], *, use_async: bool,
                 stuck_limit: int = 0, ranks: Ranks | None = None) -> None:
        self.concurrency = concurrency
        # Sync handlers with a timeout: run on a helper thread per slot (_worker/stuck.py).
        self.stuck = StuckSlots(concurrency, bus, stuck_limit)
        self.bus = bus
        self.lanes = lanes
        self.completions = completions
        self.stopping = False
        # Per thread slot (the last: the poll thread's inline runs), read between jobs: a
        # chunk stops early when set (``halt``, shutdown; the watchdog cuts an inline slice).
        self.halted = [False] * (concurrency + 1)
        # Status recording (_worker/statuses.py), set by the worker before jobs arrive:
        # completions carry the jobs that succeeded, and each thread shows the job it runs
        # (the last slot: the poll thread's inline runs).
        self.record_ok = False
        self.track_running = False
        self.running: list[JobContext | None] = [None] * (concurrency + 1)
        self.running_async: set[JobContext] = set()
        self.followups: Any = None  # where ctx.emit hands follow-ups (followups.py)
        self._tasks: Any = queue.SimpleQueue()
        # Sync tasks of promoted handlers (inline.py), run by the poll thread in run_inline;
        # handler threads append a task whose handler was promoted while it ran.
        self._inline: deque[tuple[Any, Hashable | None, Chunk | list[Chunk]]] = deque()
        self._watch: Watchdog | None = None  # started with the first inline run
        self._slice: list[JobContext] | None = None  # the inline slice running ...
        self._slice_ran = 0  # ... and, when it stopped early, how many of its jobs ran
        # Priority lanes (_worker/lanes.py): sync tasks by lane rank; None without lanes.
        self.lane_queue: LaneQueue | None = None
        if ranks:
            self._tasks = self.lane_queue = LaneQueue(ranks)
        self._threads = [threading.Thread(target=self._thread_main, args=(i,),
                                          name=f"sj-worker-{i}", daemon=True)
                         for i in range(concurrency)]
        for t in self._threads:
            t.start()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Async chunks: the poll thread appends to the inbox and wakes the loop once per batch
        # (not once per chunk); the loop queues them and runs up to ``concurrency`` places
        # (_slot; a counter and a deque: no semaphore waiter per queued chunk).
        self._inbox: deque[tuple[Any, Hashable | None, Chunk]] = deque()
        self._inbox_wake = False
        self._queued: Any = RankedDeque(ranks) if ranks else deque()
        self._active = 0
        self._places: set[asyncio.Task[None]] = set()  # see _slot
        # part -> (jobs, durations, perf_counter ends): async successes of this loop iteration
        self._tick: dict[Any, tuple[list[JobContext], list[float], list[float]]] = {}
        self._tick_flush = False
        if use_async:
            self._loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(target=self._loop_main, args=(ready,), name="sj-asyncio",
                             daemon=True).start()
            ready.wait()

    # -- submission (poll thread) -------------------------------------------------------------

    def submit(self, part: Any, lane: Hashable | None, chunk: Chunk, is_async: bool) -> None:
        """Run ``chunk`` in order as one task. ``lane`` is None for unordered chunks; otherwise
        the caller won ``lanes.offer(lane, ...)`` and the task keeps the lane until idle."""
        if is_async and self._loop is not None:
            self._inbox.append((part, lane, chunk))
            if not self._inbox_wake:
                self._inbox_wake = True
                self._loop.call_soon_threadsafe(self._take_inbox)
        elif part.pace is not None and part.pace.inline:
            self._inline.append((part, lane, chunk))
        else:
            self._tasks.put((part, lane, chunk))

    @property
    def inline_waiting(self) -> bool:
        """Tasks wait for ``run_inline`` (the poll loop should not wait for records)."""
        return bool(self._inline)

    def spill(self) -> None:
        """Hand every task waiting for ``run_inline`` to the pool (revoke, shutdown)."""
        inline = self._inline
        while inline:
            self._tasks.put(inline.popleft())

    def halt(self) -> None:
        """Chunks stop between jobs (shutdown); the jobs not run are not completed."""
        self.stopping = True
        self.halted[:] = [True] * len(self.halted)

    def shutdown(self) -> None:
        self.halt()
        if self._watch is not None:
            self._watch.close()
        for _ in self._threads:
            self._tasks.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- sync ---------------------------------------------------------------------------------

    def _thread_main(self, slot: int) -> None:
        bind_thread(self)
        get = self._tasks.get
        while True:
            task = get()
            if task is None:
                return
            self._run_sync(slot, *task)

    def _run_sync(self, slot: int, part: Any, lane: Hashable | None,
                  chunk: Chunk | list[Chunk]) -> None:
        chunks = chunk if isinstance(chunk, list) else [chunk]
        # A lower priority lane's task runs in slices and hands the rest back to the queue
        # when a higher lane's task waits (_worker/lanes.py).
        queue = self.lane_queue
        yields = queue is not None and queue.rank(part) > 0
        # A handler that may run inline is timed per chunk until promoted (inline.py).
        pace = part.pace
        if pace is not None and pace.inline:
            pace = None
        clock = time.perf_counter
        cpu = time.thread_time
        first = True
        while True:
            early = False
            if yields:
                chunks = _sliced(chunks, YIELD_EVERY)
            for i, (jobs, offsets) in enumerate(chunks):
                if yields and not first and queue is not None and queue.yield_to(part):
                    # The task keeps the ordering lane: the rest stays in order.
                    self._tasks.put((part, lane, chunks[i:]))
                    return
                first = False
                if pace is None:
                    early = self._run_chunk(slot, part, jobs, offsets)
                else:
                    t0, c0 = clock(), cpu()
                    early = self._run_chunk(slot, part, jobs, offsets)
                    t1 = clock()
                    if pace.pooled(len(jobs), t1 - t0, cpu() - c0, t1):
                        self._placed(pace, "short")
                        pace = None
                if early:
                    break
            nxt = self._next_on_lane(part, lane, early)
            if nxt is None:
                return
            if part.pace is not None and part.pace.inline:
                # Promoted meanwhile: the lane's task goes on on the poll thread.
                self._inline.append((part, lane, nxt))
                return
            chunks = nxt

    def _next_on_lane(self, part: Any, lane: Hashable | None,
                      early: bool) -> list[Chunk] | None:
        """The chunks queued on the task's lane meanwhile, which the task runs next; None
        when the task ends (stopped early, or nothing queued): its end is then reported."""
        nxt = None
        if lane is not None:
            if early:
                self.lanes.release(lane)
            else:
                nxt = self.lanes.take(lane)
        if nxt is None:
            self.completions.append((part, _NONE, None, True, None))
        return nxt

    # -- inline (poll thread; inline.py) ------------------------------------------------------

    def _placed(self, pace: Pace, reason: str) -> None:
        if self.bus.wants(InlineChanged):
            self.bus.emit(InlineChanged(pace.job_type, pace.inline, pace.per_job, reason))

    def run_inline(self) -> None:
        """Run the tasks of promoted handlers on this (the poll) thread, for at most
        ``TURN_BUDGET`` seconds; what is left goes to the pool."""
        inline = self._inline
        if not inline:
            return
        watch = self._watch
        if watch is None:
            watch = self._watch = Watchdog(self.halted, self.concurrency)
        watch.arm()
        before = bound()
        bind_thread(self)  # ctx.emit on this thread
        deadline = time.perf_counter() + TURN_BUDGET
        try:
            while inline:
                self._run_inline(*inline.popleft(), deadline, watch)
        finally:
            bind_thread(before)

    def _run_inline(self, part: Any, lane: Hashable | None, chunk: Chunk | list[Chunk],
                    deadline: float, watch: Watchdog) -> None:
        """``_run_sync`` on the poll thread: slices that fit before ``deadline`` at the
        handler's pace, each timed and watched; the rest (past the deadline, once demoted, or
        cut by the watchdog) goes to the pool with the task, which keeps its lane."""
        chunks = chunk if isinstance(chunk, list) else [chunk]
        pace = part.pace
        whole = self._summarised(part)  # slices may be timed as a whole
        clock = time.perf_counter
        cpu = time.thread_time
        slot = self.concurrency
        halted = self.halted
        while True:
            early = False
            for i, (jobs, offsets) in enumerate(chunks):
                while True:  # slices of this chunk
                    t0, c0 = clock(), cpu()
                    if not pace.inline or t0 >= deadline:
                        self._tasks.put((part, lane, [(jobs, offsets), *chunks[i + 1:]]))
                        return
                    n, usual = pace.slice(deadline - t0, len(jobs), whole)
                    if n < len(jobs):
                        head, head_offsets = jobs[:n], offsets[:n]
                        jobs, offsets = jobs[n:], offsets[n:]
                    else:
                        head, head_offsets, jobs = jobs, offsets, []
                    halted[slot] = self.stopping  # a late cut of the last slice is spent
                    self._slice = head
                    watch.started = t0
                    try:
                        early = self._run_chunk(slot, part, head, head_offsets, usual)
                    finally:
                        watch.started = 0.0
                        self._slice = None
                    t1 = clock()
                    ran = len(head)
                    cut = early and not (part.revoked or self.stopping)
                    if cut:  # the watchdog's: the slice ran past the hard limit
                        ran = self._slice_ran
                    if pace.ran_inline(ran, t1 - t0, cpu() - c0, t1):
                        self._placed(pace, "blocked" if t1 - t0 > HARD_LIMIT else "slow")
                    if cut:
                        rest = [(head[ran:], head_offsets[ran:]), (jobs, offsets),
                                *chunks[i + 1:]]
                        self._tasks.put((part, lane, [c for c in rest if c[0]]))
                        return
                    if early or not jobs:
                        break
                if early:
                    break
            nxt = self._next_on_lane(part, lane, early)
            if nxt is None:
                return
            chunks = nxt

    def _run_chunk(self, slot: int, part: Any, jobs: list[JobContext],
                   offsets: Sequence[int], usual: float = 0.0) -> bool:
        """Run one chunk in this thread; True if it stopped early (revoke, shutdown).
        ``usual``: the handler's pace (seconds per job) when the chunk is an inline slice
        predicted to fit well within the smallest duration bucket; its successes are then
        timed as a whole (``_Whole``), not job by job."""
        bus = self.bus
        whole: _Whole | None = None
        if (bus.wants(JobStarted) or bus.wants(JobSucceeded) or bus.wants(JobsSucceeded)
                or bus.wants(JobFailed)):
            if not self._summarised(part):
                return self._run_observed(slot, part, jobs, offsets)
            if not usual:
                return self._run_summarised(slot, part, jobs, offsets)
            whole = _Whole(bus, part, jobs, usual, self._failed)
        loop = self._loop
        running = self.running if self.track_running else None
        failed: list[FailedJob] | None = None
        ran = len(jobs)
        plain: Any = None  # the last handler that runs as a plain call (no timeout, sync)
        func: Any = None
        for ctx in jobs:  # the hot loop: a handler call and three flag checks per job
            if part.revoked or self.halted[slot]:
                ran = jobs.index(ctx)
                break
            if running is not None:
                running[slot] = ctx
            handler = ctx._handler
            try:
                if handler is plain:
                    func(ctx.payload, ctx)
                elif handler.is_async:
                    assert loop is not None
                    asyncio.run_coroutine_threadsafe(self._call_async(ctx), loop).result()
                elif handler.timeout is None and ctx._job.timeout_s is None:
                    plain, func = handler, handler.func  # one handler per job type
                    func(ctx.payload, ctx)
                else:
                    self._timed(slot, ctx)
            except BaseException as exc:
                if failed is None:
                    failed = []
                failed.append(self._failed(ctx, exc, 0.0, False) if whole is None
                              else whole.failed(ctx, exc))
        if running is not None:
            running[slot] = None  # before the completion: see StatusRecorder.sample
        if whole is not None:
            whole.flush(ran)
        self._complete(part, jobs, offsets, ran, failed)
        return ran < len(jobs)

    def _summarised(self, part: Any) -> bool:
        """The listeners want this partition's successes as summaries only (of one job type,
        no ``JobStarted``, no ``JobSucceeded`` one by one)."""
        bus = self.bus
        return (part.single_type is not None and bus.wants(JobsSucceeded)
                and not bus.wants(JobStarted) and not bus.wants_each(JobSucceeded))

    def _run_summarised(self, slot: int, part: Any, jobs: list[JobContext],
                        offsets: Sequence[int]) -> bool:
        """``_run_chunk`` for the default listeners (one job type, successes wanted only as
        ``JobsSucceeded``): per job, the handler call, one clock read and one append; the
        durations are the differences of the clock reads, taken per run in C-level passes."""
        bus = self.bus
        want_failed = bus.wants(JobFailed)
        clock = time.perf_counter
        loop = self._loop
        running = self.running if self.track_running else None
        failed: list[FailedJob] | None = None
        ran = len(jobs)
        first = 0  # index of the run's first job: the run is jobs[first:first + len(ends)]
        ends: list[float] = []
        add = ends.append
        plain: Any = None  # the last handler that runs as a plain call (no timeout, sync)
        func: Any = None
        start = clock()
        wall = time.time() - start  # perf_counter -> wall clock
        for ctx in jobs:  # the hot loop: a handler call, a clock read, an append per job
            if part.revoked or self.halted[slot]:
                ran = first + len(ends)
                break
            if running is not None:
                running[slot] = ctx
            handler = ctx._handler
            try:
                if handler is plain:
                    func(ctx.payload, ctx)
                elif handler.is_async:
                    assert loop is not None
                    asyncio.run_coroutine_threadsafe(self._call_async(ctx), loop).result()
                elif handler.timeout is None and ctx._job.timeout_s is None:
                    plain, func = handler, handler.func  # one handler per job type
                    func(ctx.payload, ctx)
                else:
                    self._timed(slot, ctx)
            except BaseException as exc:
                t1 = clock()
                i = first + len(ends)
                began = ends[-1] if ends else start
                _emit_run(bus, part, jobs, first, RunDurations(start, ends), wall)
                if failed is None:
                    failed = []
                failed.append(self._failed(ctx, exc, t1 - began, want_failed))
                first = i + 1
                ends = []
                add = ends.append
                start = clock()
                continue
            add(clock())
        if running is not None:
            running[slot] = None
        _emit_run(bus, part, jobs, first, RunDurations(start, ends), wall)
        self._complete(part, jobs, offsets, ran, failed)
        return ran < len(jobs)

    def _run_observed(self, slot: int, part: Any, jobs: list[JobContext],
                      offsets: Sequence[int]) -> bool:
        """``_run_chunk`` with events: per job when a listener wants them one by one, else
        one ``JobsSucceeded`` per run of successes of one job type."""
        bus = self.bus
        want_started = bus.wants(JobStarted)
        each_ok = bus.wants_each(JobSucceeded)
        summary = not each_ok and bus.wants(JobsSucceeded)
        want_failed = bus.wants(JobFailed)
        clock = time.perf_counter
        loop = self._loop
        running = self.running if self.track_running else None
        run = _Run(bus, part, jobs) if summary else None
        durations: list[float] = run.durations if run is not None else []
        run_handler = None
        failed: list[FailedJob] | None = None
        ran = len(jobs)
        t0 = clock()
        for i, ctx in enumerate(jobs):
            if part.revoked or self.halted[slot]:
                ran = i
                break
            handler = ctx._handler
            if running is not None:
                running[slot] = ctx
            if want_started:
                bus.emit(JobStarted(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                    ctx.offset, ctx.attempt))
                t0 = clock()
            try:
                if handler.is_async:
                    assert loop is not None
                    asyncio.run_coroutine_threadsafe(self._call_async(ctx), loop).result()
                elif handler.timeout is None and ctx._job.timeout_s is None:
                    handler.func(ctx.payload, ctx)
                else:
                    self._timed(slot, ctx)
            except BaseException as exc:
                t1 = clock()
                if run is not None:
                    run.flush()
                    run_handler = None
                if failed is None:
                    failed = []
                failed.append(self._failed(ctx, exc, t1 - t0, want_failed))
                t0 = clock()
                continue
            t1 = clock()
            if run is not None:
                if handler is not run_handler:  # one handler per job type
                    run.flush()
                    run.start(i, handler.job_type, t0)
                    run_handler = handler
                durations.append(t1 - t0)
            elif each_ok:
                bus.emit(JobSucceeded(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                      ctx.offset, ctx.attempt, t1 - t0,
                                      created_at((ctx,), part)[0]))
            t0 = t1
        if running is not None:
            running[slot] = None
        if run is not None:
            run.flush()
        self._complete(part, jobs, offsets, ran, failed)
        return ran < len(jobs)

    def _timed(self, slot: int, ctx: JobContext) -> None:
        timeout = timeout_of(ctx)
        assert timeout is not None
        self.stuck.call(slot, ctx, timeout)

    def _complete(self, part: Any, jobs: list[JobContext], offsets: Sequence[int], ran: int,
                  failed: list[FailedJob] | None) -> None:
        ok: list[JobContext] | None = None
        if failed is None and ran == len(offsets):
            done = offsets  # the usual case: the chunk's own list, no per-job work
            if self.record_ok:
                ok = jobs
        else:
            bad = {f[0].offset for f in failed} if failed else set()
            done = [o for o in offsets[:ran] if o not in bad]
            if self.record_ok:
                ok = [c for c in jobs[:ran] if c.offset not in bad]
            if jobs is self._slice:
                self._slice_ran = ran  # where a cut stopped the inline slice (_run_inline)
        self.completions.append((part, done, failed, False, ok))

    # -- async --------------------------------------------------------------------------------

    def _loop_main(self, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        bind_thread(self)
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            # Closed here, on its own thread, once stopped: left to the garbage collector the
            # loop's self-pipe outlived it (and an embedding process leaked two fds per worker).
            self._loop.close()

    def _take_inbox(self) -> None:
        """On the loop: queue what the poll thread submitted since the last wake-up."""
        self._inbox_wake = False  # first: a chunk appended from now on schedules a new call
        inbox = self._inbox
        queued = self._queued
        while inbox:
            queued.append(inbox.popleft())
        self._start_queued()

    def _start_queued(self) -> None:
        loop = self._loop
        assert loop is not None
        queued = self._queued
        while queued and self._active < self.concurrency:
            self._active += 1
            # Held here: the loop keeps only weak references to its tasks.
            self._places.add(loop.create_task(self._slot(queued.popleft())))

    async def _slot(self, task: tuple[Any, Hashable | None, Chunk | list[Chunk]]) -> None:
        """One of the ``concurrency`` places on the loop: runs ``task``, then the next queued
        one, until the queue is empty. A finished job's place takes the next job in the same
        step (no new asyncio task, no loop iteration in between)."""
        bus = self.bus
        queued = self._queued
        ran = 0
        lean = not bus.wants(JobStarted) and not bus.wants_each(JobSucceeded)
        try:
            while True:
                part, lane, chunk = task
                # One-job unordered chunks with at most summaries wanted (the usual async
                # set-up): no chunk machinery (see _run_one).
                if (lane is None and type(chunk) is tuple and len(chunk[0]) == 1
                        and part.single_type is not None and lean):
                    await self._run_one(part, chunk[0][0], chunk[1])
                else:
                    await self._run_async(part, lane, chunk)
                if not queued:
                    return
                ran += 1
                if ran % SLOT_YIELD_EVERY == 0:
                    # Handlers that never suspend would otherwise hold the loop for the whole
                    # queue (the inbox, timers and the other places wait for a turn).
                    await asyncio.sleep(0)
                    if not queued:
                        return
                task = queued.popleft()
        finally:
            self._active -= 1
            self._places.discard(asyncio.current_task())
            if queued:
                self._start_queued()

    async def _run_one(self, part: Any, ctx: JobContext, offsets: Sequence[int]) -> None:
        """A one-job chunk on the loop: the handler, two clock reads, one completion (its
        offset and the task's end together); the success joins this iteration's summary."""
        if part.revoked or self.stopping:
            self.completions.append((part, _NONE, None, True, None))
            return
        running = self.running_async if self.track_running else None
        if running is not None:
            running.add(ctx)
        clock = time.perf_counter
        t0 = clock()
        try:
            handler = ctx._handler
            if handler.timeout is None and ctx._job.timeout_s is None:
                await handler.func(ctx.payload, ctx)
            else:
                await self._call_async(ctx)
        except BaseException as exc:
            if running is not None:
                running.discard(ctx)
            failed = [self._failed(ctx, exc, clock() - t0, self.bus.wants(JobFailed))]
            self.completions.append((part, _NONE, failed, True, None))
            return
        t1 = clock()
        if running is not None:
            running.discard(ctx)
        if self.bus.wants(JobsSucceeded):
            self._ticked(part, ctx, t1 - t0, t1)
        self.completions.append((part, offsets, None, True, [ctx] if self.record_ok else None))

    def _ticked(self, part: Any, ctx: JobContext, duration: float, end: float) -> None:
        acc = self._tick.get(part)
        if acc is None:
            acc = self._tick[part] = ([], [], [])
            if not self._tick_flush:
                self._tick_flush = True
                asyncio.get_running_loop().call_soon(self._flush_tick)
        acc[0].append(ctx)
        acc[1].append(duration)
        acc[2].append(end)

    async def _run_async(self, part: Any, lane: Hashable | None,
                         chunk: Chunk | list[Chunk]) -> None:
        chunks = chunk if isinstance(chunk, list) else [chunk]
        queued = self._queued  # lower lanes hand their rest back, as in _run_sync
        yields = isinstance(queued, RankedDeque) and queued.rank(part) > 0
        first = True
        while True:
            early = False
            if yields:
                chunks = _sliced(chunks, YIELD_EVERY)
            for i, (jobs, offsets) in enumerate(chunks):
                if yields and not first and queued.yield_to(part):
                    queued.append((part, lane, chunks[i:]))
                    return
                first = False
                early = await self._run_chunk_async(part, jobs, offsets)
                if early:
                    break
            nxt = self._next_on_lane(part, lane, early)
            if nxt is None:
                return
            chunks = nxt

    async def _run_chunk_async(self, part: Any, jobs: list[JobContext],
                               offsets: Sequence[int]) -> bool:
        bus = self.bus
        want_started = bus.wants(JobStarted)
        each_ok = bus.wants_each(JobSucceeded)
        summary = not each_ok and bus.wants(JobsSucceeded)
        want_failed = bus.wants(JobFailed)
        clock = time.perf_counter
        running = self.running_async if self.track_running else None
        # One job type here: successes join the loop iteration's summary of this partition
        # (chunks run concurrently on the loop; one event per partition and iteration).
        ticked = summary and not want_started and part.single_type is not None
        run = _Run(bus, part, jobs) if summary and not ticked else None
        run_handler = None
        failed: list[FailedJob] | None = None
        ran = len(jobs)
        for i, ctx in enumerate(jobs):
            if part.revoked or self.stopping:
                ran = i
                break
            if running is not None:
                running.add(ctx)
            if want_started:
                bus.emit(JobStarted(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                    ctx.offset, ctx.attempt))
            t0 = clock()
            try:
                handler = ctx._handler
                if handler.timeout is None and ctx._job.timeout_s is None:
                    await handler.func(ctx.payload, ctx)
                else:
                    await self._call_async(ctx)
            except BaseException as exc:
                if running is not None:
                    running.discard(ctx)
                if run is not None:
                    run.flush()
                    run_handler = None
                if failed is None:
                    failed = []
                failed.append(self._failed(ctx, exc, clock() - t0, want_failed))
                continue
            t1 = clock()
            if running is not None:
                running.discard(ctx)
            if ticked:
                self._ticked(part, ctx, t1 - t0, t1)
            elif run is not None:
                if ctx._handler is not run_handler:
                    run.flush()
                    run.start(i, ctx._handler.job_type, t0)
                    run_handler = ctx._handler
                run.durations.append(t1 - t0)
            elif each_ok:
                bus.emit(JobSucceeded(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                      ctx.offset, ctx.attempt, t1 - t0,
                                      created_at((ctx,), part)[0]))
        if run is not None:
            run.flush()
        self._complete(part, jobs, offsets, ran, failed)
        return ran < len(jobs)

    async def _call_async(self, ctx: JobContext) -> None:
        """Run an async handler, cancelled past its timeout (``JobTimeout``, retry path)."""
        handler = ctx._handler
        timeout = timeout_of(ctx)
        if timeout is None:
            await handler.func(ctx.payload, ctx)
            return
        try:
            async with asyncio.timeout(timeout) as scope:
                await handler.func(ctx.payload, ctx)
        except TimeoutError:
            if not scope.expired():
                raise  # the handler's own TimeoutError
            self.bus.emit(JobTimedOut(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                      ctx.offset, ctx.attempt, timeout))
            raise JobTimeout(timeout) from None

    def _flush_tick(self) -> None:
        """On the loop, once per iteration with successes: one ``JobsSucceeded`` per
        partition for the async jobs that succeeded since the last one (``finished_at``
        per job: they ran concurrently, not back to back)."""
        self._tick_flush = False
        tick, self._tick = self._tick, {}
        wall = time.time() - time.perf_counter()
        for part, (jobs, durations, ends) in tick.items():
            finished = tuple([wall + end for end in ends])
            self.bus.emit(JobsSucceeded(part.single_type, part.topic, part.partition,
                                        finished[0] - durations[0], tuple(durations),
                                        created_at(jobs, part), finished))

    # -- failures -----------------------------------------------------------------------------

    def _failed(self, ctx: JobContext, exc: BaseException, duration: float,
                want_failed: bool) -> FailedJob:
        if type(exc) is KeyHeld:  # it did not run: no event, no traceback (keyhold.py)
            return ctx, HELD_FAILURE, HELD_DECISION
        if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is _MAIN:
            # Ctrl-C reached an inline handler on the main thread (signals left to Python's
            # default): the worker is interrupted, as in the poll loop; not the job's failure.
            raise exc
        if type(exc) is InPlace:  # key-strict retries it in place: no record, no traceback
            failure, decision = exc.failure, exc.decision
        else:
            job = ctx._job
            failure = describe(exc)
            decision = decide(exc, ctx.attempt, job.retry, job.permanent_errors)
        if want_failed:
            self.bus.emit(JobFailed(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                    ctx.offset, ctx.attempt, duration, failure.error_class,
                                    failure.message, decision.will_retry))
        return ctx, failure, decision


_NONE: list[int] = []  # "no offsets" (never mutated)
_MAIN = threading.main_thread()


YIELD_EVERY = 1  # jobs between a lower lane task's looks at the queue
SLOT_YIELD_EVERY = 64  # tasks a place on the loop runs back to back before it yields once


def _sliced(chunks: list[Chunk], size: int) -> list[Chunk]:
    if all(len(jobs) <= size for jobs, _ in chunks):
        return chunks
    return [(jobs[i:i + size], offsets[i:i + size]) for jobs, offsets in chunks
            for i in range(0, len(jobs), size)]


_CREATED = attrgetter("created_at_ms")
_RAW_CREATED = attrgetter("_created")


def created_at(jobs: Sequence[JobContext], part: Any) -> tuple[int | None, ...]:
    """What success summaries report as each job's created-at (``JobsSucceeded``): for the
    records of a job topic, their timestamps (read here, once per summary: the intake reads
    none); for a wait topic's, the ``sj-created-at`` the intake read (``_created``); for a
    job not built from a record (a foreign one's ``JobContext``), ``created_at_ms``."""
    try:
        if part.wait is None:
            # A comprehension, not map(methodcaller): that builds a bound method per call,
            # twice the cost of the record's timestamp read itself.
            stamps: list[int] = [ctx._msg.timestamp()[1] for ctx in jobs]  # type: ignore[attr-defined]
            if stamps and min(stamps) <= 0:  # -1: the record has no timestamp
                return tuple([ts if ts > 0 else None for ts in stamps])
            return tuple(stamps)
        created: tuple[int | None, ...] = tuple(map(_RAW_CREATED, jobs))
    except AttributeError:  # not all of them RecordContexts: job by job
        return tuple([created_at((ctx,), part)[0] if isinstance(ctx, RecordContext)
                      else ctx.created_at_ms for ctx in jobs])
    if None in created:
        return tuple(map(_CREATED, jobs))
    return created


def _emit_run(bus: EventBus, part: Any, jobs: list[JobContext], first: int,
              run: RunDurations, wall: float) -> None:
    """One ``JobsSucceeded`` for ``jobs[first:first + len(run)]``, which ran back to back
    (``wall`` converts ``perf_counter`` to wall time). The durations stay clock readings
    (``RunDurations``) until a listener reads them: the metrics listener needs none of them
    when the run was short."""
    n = len(run)
    if not n:
        return
    created = created_at(jobs[first:first + n] if first or n < len(jobs) else jobs, part)
    bus.emit(JobsSucceeded(part.single_type, part.topic, part.partition, wall + run.start,
                           run, created))


class _Whole:
    """The successes of an inline slice timed as a whole (``_run_chunk`` with ``usual``): a
    clock reading at its start, at each failure (before and after its handling) and at its
    end, none per job. A failure ends a run: the successes before it are given at most the
    handler's pace each, the failure the rest (a call that blocked and failed shows as the
    slow one); a job held behind its key did not run and is given nothing."""

    __slots__ = ("_fail", "bus", "jobs", "mark", "part", "since", "usual", "wall",
                 "want_failed")

    def __init__(self, bus: EventBus, part: Any, jobs: list[JobContext], usual: float,
                 fail: Callable[[JobContext, BaseException, float, bool], FailedJob]) -> None:
        self.bus = bus
        self.part = part
        self.jobs = jobs
        self.usual = usual
        self._fail = fail
        self.want_failed = bus.wants(JobFailed)
        self.since = 0  # the first job not yet reported
        self.mark = time.perf_counter()
        self.wall = time.time() - self.mark  # perf_counter -> wall clock

    def failed(self, ctx: JobContext, exc: BaseException) -> FailedJob:
        now = time.perf_counter()
        i = self.jobs.index(ctx, self.since)  # from the last failure on: O(n) a slice
        k = i - self.since  # the successes before it
        spent = now - self.mark
        ok = spent if type(exc) is KeyHeld else min(k * self.usual, spent * k / (k + 1))
        self._report(i, self.mark + ok)
        try:
            return self._fail(ctx, exc, spent - ok, self.want_failed)
        finally:  # the failure's handling (its event, its traceback) is nobody's run time
            self.since, self.mark = i + 1, time.perf_counter()

    def flush(self, ran: int) -> None:
        """The successes up to ``ran`` (where the slice stopped)."""
        self._report(ran, time.perf_counter())

    def _report(self, upto: int, end: float) -> None:
        since = self.since
        _emit_run(self.bus, self.part, self.jobs, since,
                  RunDurations.whole(self.mark, end, upto - since, self.usual), self.wall)


class _Run:
    """Successes of one job type run back to back from ``jobs[first]``, emitted as one
    ``JobsSucceeded`` (the runner appends to ``durations``)."""

    __slots__ = ("bus", "durations", "first", "job_type", "jobs", "part", "t0", "wall")

    def __init__(self, bus: EventBus, part: Any, jobs: list[JobContext]) -> None:
        self.bus = bus
        self.part = part
        self.jobs = jobs
        self.durations: list[float] = []
        self.first = 0
        self.job_type = ""
        self.t0 = 0.0
        self.wall = time.time() - time.perf_counter()  # perf_counter -> wall clock

    def start(self, first: int, job_type: str, t0: float) -> None:
        self.first = first
        self.job_type = job_type
        self.t0 = t0

    def flush(self) -> None:
        durations = self.durations
        if durations:
            part = self.part
            first = self.first
            created = created_at(self.jobs[first:first + len(durations)], part)
            self.bus.emit(JobsSucceeded(self.job_type, part.topic, part.partition,
                                        self.wall + self.t0, tuple(durations), created))
            durations.clear()
