"""Timeouts of sync handlers, and the threads they leave stuck.

A thread cannot be killed, so a sync handler with a timeout runs on a helper thread of its
slot (the slot thread waits on it for at most the timeout). Past the timeout the slot raises
``JobTimeout`` (the job takes the retry path like an async one; the late return, if any, is
ignored) and the helper thread is *stuck*: it is counted, and the slot gets a new helper, so
the pool keeps its capacity. Up to ``limit`` stuck threads are replaced (default: one per
slot); at the limit the worker reports itself not live (``/healthz``, the supervisor of
``--processes``) so it is restarted, and a slot whose helper is stuck beyond the limit waits
for it (threads stay bounded: ``concurrency + limit``). A stuck thread that returns is freed
(``SlotFreed``) and counted off.

Handlers without a timeout run in the slot thread itself, as before: no hand-off per job.
"""

from __future__ import annotations

import queue
import threading
import time

from ..errors import JobTimeout
from ..events import EventBus, JobTimedOut, SlotFreed, SlotStuck
from .context import JobContext, bind_thread, bound

__all__ = ["StuckSlots", "timeout_of"]


def timeout_of(ctx: JobContext) -> float | None:
    """The job's timeout: the handler's override, else the job type's (None: no timeout)."""
    handler = ctx._handler
    return handler.timeout if handler.timeout is not None else ctx._job.timeout_s


class _Call:
    __slots__ = ("abandoned", "bound", "ctx", "done", "error", "finished", "started")

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.bound = bound()  # the submitting thread's executor: where ctx.emit goes
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.finished = False
        self.abandoned = False
        self.started = time.monotonic()


class _Helper:
    """One thread running one slot's timed sync calls, one at a time."""

    def __init__(self, owner: StuckSlots, slot: int, serial: int) -> None:
        self.owner = owner
        self.retired = False  # replaced after getting stuck: exits once its call returns
        self.busy: _Call | None = None
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        threading.Thread(target=self._main, name=f"sj-timed-{slot}.{serial}",
                         daemon=True).start()

    def run(self, call: _Call) -> None:
        self.busy = call
        self._calls.put(call)

    def _main(self) -> None:
        lock = self.owner.lock
        while True:
            call = self._calls.get()
            ctx = call.ctx
            bind_thread(call.bound)
            try:
                ctx._handler.func(ctx.payload, ctx)
            except BaseException as exc:
                call.error = exc
            with lock:
                call.finished = True
                abandoned = call.abandoned
                self.busy = None
            call.done.set()
            if abandoned:
                self.owner.freed(call)
                if self.retired:
                    return


class StuckSlots:
    """Runs timed sync calls for the executor's slots and counts the stuck threads."""

    def __init__(self, concurrency: int, bus: EventBus, limit: int = 0) -> None:
        self.bus = bus
        self.limit = limit or concurrency
        self.stuck = 0  # helper threads past their timeout and still running
        self.lock = threading.Lock()
        self._helpers: list[_Helper | None] = [None] * concurrency
        self._serial = 0

    def call(self, slot: int, ctx: JobContext, timeout: float) -> None:
        """Run ``ctx``'s sync handler on the slot's helper; ``JobTimeout`` past ``timeout``."""
        helper = self._helpers[slot]
        busy = helper.busy if helper is not None else None
        if busy is not None:
            # Beyond the limit the stuck helper was kept: the slot waits for it (stuck too).
            busy.done.wait()
        if helper is None:
            self._serial += 1
            helper = self._helpers[slot] = _Helper(self, slot, self._serial)
        call = _Call(ctx)
        helper.run(call)
        if call.done.wait(timeout):
            if call.error is not None:
                raise call.error
            return
        with self.lock:
            if call.finished:  # returned just now: not stuck
                late = True
            else:
                late = False
                call.abandoned = True
                self.stuck += 1
                stuck = self.stuck
                replaced = stuck <= self.limit
                if replaced:  # under the lock: the helper may return and read it at once
                    helper.retired = True
        if late:
            if call.error is not None:
                raise call.error
            return
        if replaced:
            self._helpers[slot] = None  # the next timed call starts a new helper
        bus = self.bus
        bus.emit(JobTimedOut(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition, ctx.offset,
                             ctx.attempt, timeout))
        bus.emit(SlotStuck(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition, ctx.offset,
                           ctx.attempt, timeout, slot, stuck, self.limit, replaced))
        raise JobTimeout(timeout)

    def freed(self, call: _Call) -> None:
        """On the stuck helper's thread: its handler returned at last (its result is ignored)."""
        with self.lock:
            self.stuck -= 1
            stuck = self.stuck
        ctx = call.ctx
        self.bus.emit(SlotFreed(ctx.job_id, ctx.job_type, time.monotonic() - call.started,
                                stuck, self.limit))
