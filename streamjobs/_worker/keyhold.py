"""Per-key order through retries (``--ordering key-strict``).

With ``key`` ordering a retried job leaves its key's order (it waits on a retry tier while
later jobs of its key run). With ``key-strict`` a job that fails with a retry decision is
retried *in place*: it stays in its partition's tracker (its offset is not finished, so the
commit position waits below it), the key is blocked, and later jobs of the key from that
partition wait behind it, in offset order, while other keys keep running. When its delay is
over it runs again (attempt + 1) followed by the waiting jobs, as one chunk of its key's lane.
Once it succeeds they run; once it is dead-lettered they run (``release``, the default) or are
dead-lettered behind it in order with reason ``key_held`` (``hold``), so a reprocess of the
dead-letter topic replays the key in order.

State and recovery: nothing but Kafka. The blocked job and everything after it are
uncommitted, so after a kill or a rebalance the partition's next owner reads them again from
the committed offset and runs them in offset order; the attempt count starts again at 1 there
(attempts are counted per owner). While a key is blocked the partition's commit position
stays below the blocked job: other keys' finished jobs above it run again after a crash
(at-least-once).

The blocking is decided on the handler thread (``guard``), so a key's next job in the same
chunk already sees it; that job is handed back with ``KeyHeld`` (no event: it did not run)
and queued.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from bisect import insort
from collections.abc import Callable, Sequence
from typing import Any

from .app import Handler
from .failures import Decision, Failure

__all__ = ["HOLD_MODES", "KeyHeld", "KeyHold"]

HOLD_MODES = ("release", "hold")
HELD_CLASS = "streamjobs._worker.keyhold.KeyHeld"
# What the executor reports for a job that raised KeyHeld (it never ran).
HELD_FAILURE = Failure(HELD_CLASS, "its key waits behind a job being retried")
HELD_DECISION = Decision(delay=0.0)


class KeyHeld(Exception):
    """This job's key waits behind a job being retried (not a failure of the job)."""


class KeyHold:
    """One per worker. ``guard`` runs on handler threads; the rest on the poll thread."""

    def __init__(self, on_dead_letter: str = "release") -> None:
        self.on_dead_letter = on_dead_letter
        self._lock = threading.Lock()
        self._blocked: set[tuple[Any, bytes]] = set()  # (part, key), written by handlers too
        # (part, key) -> jobs waiting behind the blocked one, in offset order
        self.waiting: dict[tuple[Any, bytes], list[tuple[int, int, Any]]] = {}
        self._timers: list[tuple[float, int, Any, Any]] = []  # (due, seq, part, ctx)
        self._seq = itertools.count()
        self._guards: dict[int, Handler] = {}  # id(handler) -> its wrapper
        self._wrappers: set[int] = set()
        # hold: keys whose blocked job was dead-lettered (late KeyHeld jobs follow it)
        self._dead_behind: set[tuple[Any, bytes]] = set()

    # -- handler threads ----------------------------------------------------------------------

    def guard(self, ctx: Any) -> None:
        """Make ``ctx`` (a ``RecordContext``) run through the key check (poll thread, at
        dispatch)."""
        handler = ctx._handler
        if id(handler) in self._wrappers:
            return  # a retried job, guarded already
        wrapped = self._guards.get(id(handler))
        if wrapped is None:
            wrapped = self._guards[id(handler)] = self._wrap(handler)
            self._wrappers.add(id(wrapped))
        ctx._handler = wrapped

    def _wrap(self, handler: Handler) -> Handler:
        blocked, lock = self._blocked, self._lock
        func = handler.func

        def check(ctx: Any) -> tuple[Any, bytes] | None:
            where = (ctx._part, ctx.key)
            with lock:
                if where in blocked:
                    raise KeyHeld("its key waits behind a job being retried")
            return where

        def failed(ctx: Any, where: tuple[Any, bytes] | None, exc: BaseException) -> None:
            # Any failure blocks its key until the poll thread has routed it (retried in place,
            # or dead-lettered and then released or held): the key's next job, maybe next in
            # this very chunk, may not finish before its dead letter is written.
            if where is not None and where[1] is not None:
                with lock:
                    blocked.add(where)

        if handler.is_async:
            async def run_async(payload: dict[str, Any], ctx: Any) -> None:
                where = check(ctx)
                try:
                    await func(payload, ctx)
                except BaseException as exc:
                    failed(ctx, where, exc)
                    raise
            return Handler(handler.job_type, run_async, True, handler.timeout)

        def run(payload: dict[str, Any], ctx: Any) -> None:
            where = check(ctx)
            try:
                func(payload, ctx)
            except BaseException as exc:
                failed(ctx, where, exc)
                raise
        return Handler(handler.job_type, run, False, handler.timeout)

    # -- poll thread --------------------------------------------------------------------------

    def admit(self, part: Any, jobs: list[Any],
              offsets: Sequence[int] | None) -> tuple[list[Any], Sequence[int] | None]:
        """At dispatch (poll thread): guard every job and keep back, waiting, those of a
        blocked key; returns the others (and their offsets when given)."""
        with self._lock:
            blocked = {k for p, k in self._blocked if p is part}
        keep: list[Any] = []
        kept: list[int] = []
        offs = offsets if offsets is not None else [ctx.offset for ctx in jobs]
        for ctx, offset in zip(jobs, offs, strict=True):
            if not hasattr(ctx, "_part"):
                keep.append(ctx)  # a foreign record: as with --ordering key
                kept.append(offset)
                continue
            self.guard(ctx)
            if ctx.key is not None and ctx.key in blocked:
                self.wait(part, ctx)
            else:
                keep.append(ctx)
                kept.append(offset)
        if len(keep) == len(jobs):
            return jobs, offsets
        return keep, kept if offsets is not None else None

    def is_blocked(self, part: Any, key: bytes) -> bool:
        with self._lock:
            return (part, key) in self._blocked

    def held(self, part: Any, ctx: Any) -> str:
        """``ctx`` came back with ``KeyHeld``: it waits (``"wait"``), or its key was unblocked
        meanwhile and it runs now (``"run"``) or follows a dead letter (``"dead"``, hold)."""
        where = (part, ctx.key)
        with self._lock:
            blocked = where in self._blocked
        if blocked:
            self.wait(part, ctx)
            return "wait"
        return "dead" if where in self._dead_behind else "run"

    def wait(self, part: Any, ctx: Any) -> None:
        """``ctx`` waits behind its key's blocked job."""
        queue = self.waiting.setdefault((part, ctx.key), [])
        insort(queue, (ctx.offset, next(self._seq), ctx))

    def retry_later(self, part: Any, ctx: Any, delay: float) -> None:
        """The blocked job runs again after ``delay`` seconds."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), part, ctx))

    @property
    def due(self) -> float | None:
        """When the next blocked job runs again (``time.monotonic``), if any."""
        return self._timers[0][0] if self._timers else None

    def fire(self, dispatch: Callable[[Any, list[Any]], None]) -> None:
        """Run the blocked jobs whose delay is over, each followed by its key's waiting
        jobs (one chunk: the lane keeps them in order)."""
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            _, _, part, ctx = heapq.heappop(timers)
            if part.gone or part.revoked:
                continue
            ctx.attempt += 1
            self._dead_behind.discard((part, ctx.key))
            dispatch(part, [ctx, *self._unblock(part, ctx.key)])

    def dead_lettered(self, part: Any, key: bytes) -> list[Any]:
        """The key's blocked job was dead-lettered: its waiting jobs, to run (``release``)
        or to dead-letter behind it (``hold``)."""
        if self.on_dead_letter == "hold":
            self._dead_behind.add((part, key))
        return self._unblock(part, key)

    def _unblock(self, part: Any, key: bytes) -> list[Any]:
        with self._lock:
            self._blocked.discard((part, key))
        return [ctx for _, _, ctx in self.waiting.pop((part, key), [])]

    def forget(self, part: Any) -> None:
        """``part`` left: its blocked and waiting jobs run again at its next owner."""
        with self._lock:
            self._blocked.difference_update([w for w in self._blocked if w[0] is part])
        for where in [w for w in self.waiting if w[0] is part]:
            del self.waiting[where]
        self._dead_behind.difference_update([w for w in self._dead_behind if w[0] is part])
        self._timers = [t for t in self._timers if t[2] is not part]
        heapq.heapify(self._timers)
