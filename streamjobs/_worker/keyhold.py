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
stays below the blocked job.

Memory bound (per worker, ``M`` = ``max_in_flight``): ``M`` unfinished jobs besides the
waiting ones (running, queued, or blocked in a retry delay), as in every ordering (released
waiting jobs may overshoot it until they run: no record is taken meanwhile), plus at most
``2 M`` jobs waiting behind blocked keys (``max_waiting``). The
two are counted apart (``bounds``): while keys are blocked their waiting jobs can be a large
share of what a worker took, and counted together they fill the in-flight bound, which
pauses every partition (each resume costs a fetch round trip). At ``2 M`` waiting jobs
every partition pauses until blocked keys drain below it. Each partition's tracker also
keeps one offset per record at or above its commit position (finished ones included): a
partition whose commit position a blocked job holds pauses once ``10 M`` of them sit there
(``stalled``), until that job's next retry, so its other keys stop flowing only behind a job
blocked that long.

What a crash (kill, lost partitions) runs again, per partition: the blocked job and the jobs
waiting behind it, in offset order (never run, or run and not finished), plus the jobs of
other keys finished above the blocked offset since it blocked: at most ``10 M`` records, in
practice the partition's rate times the blocked job's time in its retry delays.
At-least-once, as everywhere; nothing is skipped (the commit position never passes an
unfinished job).

The blocking is decided on the handler thread (handlers are wrapped once, ``wrap``), so a
key's next job in the same chunk already sees it; that job is handed back with ``KeyHeld``
(no event: it did not run) and queued. A retry decision is taken there too and raised as
``InPlace``: the failure without a traceback, which no record carries in place.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from bisect import insort
from collections.abc import Callable
from typing import Any

from .app import Handler
from .failures import Decision, Failure, decide, describe

__all__ = ["HOLD_MODES", "InPlace", "KeyHeld", "KeyHold"]

HOLD_MODES = ("release", "hold")
HELD_CLASS = "streamjobs._worker.keyhold.KeyHeld"
# What the executor reports for a job that raised KeyHeld (it never ran).
HELD_FAILURE = Failure(HELD_CLASS, "its key waits behind a job being retried")
HELD_DECISION = Decision(delay=0.0)
STALL_RECHECK = 0.05  # seconds: the soonest a partition paused by ``max_span`` looks again
RECHECK = 0.002  # seconds: a key let go while its lane is still busy is looked at again


class _DeadLetter:
    """A timer entry: let go of ``key``'s waiting jobs behind dead-lettered ``job_id``."""

    __slots__ = ("job_id", "key")

    def __init__(self, key: bytes, job_id: str) -> None:
        self.key = key
        self.job_id = job_id


class KeyHeld(Exception):
    """This job's key waits behind a job being retried (not a failure of the job)."""


class InPlace(Exception):
    """A keyed job failed and will be retried in place: its failure and decision, decided
    on the handler thread (no traceback: no retry record carries one)."""

    def __init__(self, failure: Failure, decision: Decision) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.decision = decision


class KeyHold:
    """One per worker. Handler wrappers (``wrap``) run on handler threads; the rest on the
    poll thread."""

    def __init__(self, on_dead_letter: str = "release", max_waiting: int = 10_000,
                 max_span: int = 50_000) -> None:
        self.on_dead_letter = on_dead_letter
        self.max_waiting = max_waiting
        self.max_span = max_span
        self._lock = threading.Lock()
        # part -> its blocked keys; written by handler threads too (under the lock)
        self._blocked: dict[Any, set[bytes]] = {}
        # (part, key) -> jobs waiting behind the blocked one, in offset order
        self.waiting: dict[tuple[Any, bytes], list[tuple[int, int, Any]]] = {}
        self.count = 0  # jobs in ``waiting``
        # (due, seq, part, a retried job or a _DeadLetter): when a key is let go
        self._timers: list[tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()
        # hold: keys whose blocked job was dead-lettered (late KeyHeld jobs follow it)
        self._dead_behind: set[tuple[Any, bytes]] = set()
        # (part, key) -> jobs handed back with KeyHeld, not yet seen by the poll thread
        self._handed: dict[tuple[Any, bytes], int] = {}

    def bounds(self, max_in_flight: int, resume_at: int) -> tuple[int, int]:
        """The in-flight bound and resume point (poll thread): jobs waiting behind a blocked
        key do not count against ``max_in_flight`` while fewer than ``max_waiting`` wait;
        from ``max_waiting`` on, every partition pauses until blocked keys drain below it."""
        n = self.count
        if n >= self.max_waiting:
            return 0, -1
        return max_in_flight + n, resume_at + n

    def stalled(self) -> list[tuple[Any, float]]:
        """Partitions whose commit position a blocked job holds while ``max_span`` records
        or more sit at or above it, each with when (``time.monotonic``) to look again: the
        next retry of one of its blocked jobs. The caller pauses them until then, so what
        a crash runs again and what the tracker holds stay bounded (poll thread)."""
        if not self._blocked:
            return []
        over = {part for part in list(self._blocked) if part.tracker.span >= self.max_span}
        if not over:
            return []
        due: dict[Any, float] = {}
        for at, _, part, _ in self._timers:
            if part in over and (part not in due or at < due[part]):
                due[part] = at
        # not before 50 ms from now: a pause and a resume each cost a fetch
        soon = time.monotonic() + STALL_RECHECK
        return [(part, max(due.get(part, soon), soon)) for part in over]

    # -- handler threads ----------------------------------------------------------------------

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` behind the key check (once per job type, at start-up): a job of a
        blocked key raises ``KeyHeld`` without running, and any failure blocks its key."""
        return self._wrap(handler)

    def _wrap(self, handler: Handler) -> Handler:
        # Reads without the lock (one dict and one set look-up per job; a plain ``JobContext``
        # has no ``_part``: as with ``key``). The key's next job runs after this one on the same
        # lane, so it sees the block added here; writes take the lock, because the poll
        # thread drops a partition's emptied set.
        blocked, lock, handed = self._blocked, self._lock, self._handed
        func = handler.func

        def hand_back(ctx: Any) -> KeyHeld:
            where = (ctx._part, ctx.key)
            if not ctx._part.gone:  # a gone partition's completions are never seen
                with lock:
                    handed[where] = handed.get(where, 0) + 1
            return KeyHeld("its key waits behind a job being retried")

        def failed(ctx: Any, exc: BaseException) -> None:
            # Any failure blocks its key until the poll thread has routed it (retried in place,
            # or dead-lettered and then released or held): the key's next job, maybe next in
            # this very chunk, may not finish before its dead letter is written.
            part = getattr(ctx, "_part", None)
            if part is None or ctx.key is None or part.gone:
                return
            with lock:
                blocked.setdefault(part, set()).add(ctx.key)
            if isinstance(exc, Exception):
                job = ctx._job
                decision = decide(exc, ctx.attempt, job.retry, job.permanent_errors)
                if decision.will_retry:
                    raise InPlace(describe(exc, trace=False), decision) from None

        if handler.is_async:
            async def run_async(payload: dict[str, Any], ctx: Any) -> None:
                keys = blocked.get(getattr(ctx, "_part", None))
                if keys and ctx.key in keys:
                    raise hand_back(ctx)
                try:
                    await func(payload, ctx)
                except BaseException as exc:
                    failed(ctx, exc)
                    raise
            return Handler(handler.job_type, run_async, True, handler.timeout)

        def run(payload: dict[str, Any], ctx: Any) -> None:
            keys = blocked.get(getattr(ctx, "_part", None))
            if keys and ctx.key in keys:
                raise hand_back(ctx)
            try:
                func(payload, ctx)
            except BaseException as exc:
                failed(ctx, exc)
                raise
        return Handler(handler.job_type, run, False, handler.timeout)

    # -- poll thread --------------------------------------------------------------------------

    def held_keys(self, part: Any) -> set[bytes] | tuple[()]:
        """``part``'s blocked keys, for ``ordering.dispatch`` (poll thread; membership tests
        need no lock)."""
        return self._blocked.get(part) or ()

    def keep_back(self, part: Any, jobs: list[Any],
                  offsets: list[int]) -> tuple[list[Any], list[int]]:
        """At dispatch (poll thread), one blocked key's jobs: they wait behind its blocked
        job; returns those that run anyway (a plain ``JobContext``'s, as with ``key``)."""
        keep: list[Any] = []
        kept: list[int] = []
        for ctx, offset in zip(jobs, offsets, strict=True):
            if hasattr(ctx, "_part"):
                self.wait(part, ctx)
            else:
                keep.append(ctx)
                kept.append(offset)
        return keep, kept

    def is_blocked(self, part: Any, key: bytes) -> bool:
        with self._lock:
            keys = self._blocked.get(part)
            return keys is not None and key in keys

    def held(self, part: Any, ctx: Any) -> str:
        """``ctx`` came back with ``KeyHeld``: it waits (``"wait"``), or its key was unblocked
        meanwhile and it runs now (``"run"``) or follows a dead letter (``"dead"``, hold)."""
        where = (part, ctx.key)
        with self._lock:
            left = self._handed.get(where, 0) - 1
            if left > 0:
                self._handed[where] = left
            else:
                self._handed.pop(where, None)
            keys = self._blocked.get(part)
            blocked = keys is not None and ctx.key in keys
        if blocked:
            self.wait(part, ctx)
            return "wait"
        return "dead" if (part, ctx.key) in self._dead_behind else "run"

    def wait(self, part: Any, ctx: Any) -> None:
        """``ctx`` waits behind its key's blocked job."""
        queue = self.waiting.setdefault((part, ctx.key), [])
        entry = (ctx.offset, next(self._seq), ctx)
        if not queue or entry > queue[-1]:
            queue.append(entry)  # the usual case: a batch's jobs come in offset order
        else:
            insort(queue, entry)
        self.count += 1

    def retry_later(self, part: Any, ctx: Any, delay: float) -> None:
        """The blocked job runs again after ``delay`` seconds."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), part, ctx))

    @property
    def due(self) -> float | None:
        """When the next key is let go (``time.monotonic``), if any."""
        return self._timers[0][0] if self._timers else None

    def fire(self, dispatch: Callable[[Any, list[Any]], None],
             busy: Callable[[Any], bool],
             dead: Callable[[Any, list[Any], str], None]) -> None:
        """Let go of the keys whose time came: a retried job whose delay is over runs again
        followed by its key's waiting jobs (one chunk: the lane keeps them in order); the
        waiting jobs of a dead-lettered one go to ``dead`` (part, jobs, its job id). Not
        while the key's lane (``busy``) still runs jobs taken before the block, or jobs it
        handed back are not seen yet: those would run out of order (they join the waiting
        ones first)."""
        timers = self._timers
        now = time.monotonic()
        later = []
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            _, seq, part, item = entry
            if part.gone or part.revoked:
                continue
            key = item.key
            if (part, key) in self._handed or busy((part, key)):
                later.append((now + RECHECK, seq, part, item))
                continue
            if type(item) is _DeadLetter:
                dead(part, self._unblock(part, key), item.job_id)
                self._dead_behind.discard((part, key))  # the key is let go: no stale behind
                continue
            item.attempt += 1
            self._dead_behind.discard((part, key))
            dispatch(part, [item, *self._unblock(part, key)])
        for entry in later:
            heapq.heappush(timers, entry)

    def dead_lettered(self, part: Any, key: bytes, job_id: str) -> None:
        """The key's blocked job was dead-lettered: its waiting jobs go to ``fire``'s
        ``dead`` (to run, ``release``, or to be dead-lettered behind it, ``hold``) once
        nothing taken before the block is left on its lane."""
        if self.on_dead_letter == "hold":
            self._dead_behind.add((part, key))
        heapq.heappush(self._timers, (time.monotonic(), next(self._seq), part,
                                      _DeadLetter(key, job_id)))

    def _unblock(self, part: Any, key: bytes) -> list[Any]:
        with self._lock:
            keys = self._blocked.get(part)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._blocked[part]
        queue = self.waiting.pop((part, key), [])
        self.count -= len(queue)
        return [ctx for _, _, ctx in queue]

    def forget(self, part: Any) -> None:
        """``part`` left: its blocked and waiting jobs run again at its next owner."""
        with self._lock:
            self._blocked.pop(part, None)
            for where in [w for w in self._handed if w[0] is part]:
                del self._handed[where]
        for where in [w for w in self.waiting if w[0] is part]:
            self.count -= len(self.waiting.pop(where))
        self._dead_behind.difference_update([w for w in self._dead_behind if w[0] is part])
        self._timers = [t for t in self._timers if t[2] is not part]
        heapq.heapify(self._timers)
