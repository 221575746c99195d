"""Running short sync handlers on the poll thread (``--inline-under``).

A sync handler that takes a few microseconds per job costs the pool more than its own run:
each chunk's hand-off (a queue put, a thread wake-up) and, above all, the GIL passed back and
forth between the poll thread and the handler threads every switch interval. Run on the poll
thread instead, such a handler costs its call and nothing else.

``Pace`` is one job type's record of how long its jobs take and whether they run inline.
Every sync handler without a timeout starts in the pool, where each chunk is timed (wall and
thread CPU time, per chunk, not per job). Once ``PROMOTE_JOBS`` jobs took on average less
than ``under`` seconds each (of CPU, if their wall time stays under ``CONTENDED`` times that:
a busy pool's threads wait for the GIL, and that is the cost inlining removes), it is
*promoted*: its chunks run on the poll thread, at most ``TURN_BUDGET`` seconds of them per
loop turn (a chunk is cut into slices that fit at its measured pace; the rest goes to the
pool on the same ordering lane, so order holds; a slice predicted under ``WHOLE_S`` is
timed as a whole for the success summaries too, see ``Pace.slice``). Inline, each slice is
timed the same way, and the handler is *demoted* back to the pool when a slice took longer
than ``HARD_LIMIT`` (a call that blocked) or its jobs over the last ``CHECK_JOBS`` /
``CHECK_S`` fail the promotion's rule; it may be promoted again only after a back-off (1 s,
doubled per demotion up to ``MAX_BACKOFF``), so a handler with mixed run times does not flap.

What a promoted handler can cost: the poll loop runs nothing else while one of its slices
runs. Nothing is timed per job; instead a ``Watchdog`` thread looks at the running slice every
``TICK`` and, past ``HARD_LIMIT``, raises the flag the slice checks between jobs (the check it
makes anyway for a revoke or a shutdown): a handler whose calls suddenly block holds the loop
for the one call that blocks (plus the watchdog's delay), then the rest of the slice goes to
the pool on its lane and the handler is demoted (docs/worker.md "Inline handlers").
"""

from __future__ import annotations

import math
import threading
import time

from ..errors import ConfigError

__all__ = ["CHECK_JOBS", "CHECK_S", "HARD_LIMIT", "MAX_BACKOFF", "MAX_SLICE", "MIN_WHOLE",
           "PROMOTE_JOBS", "TICK", "TURN_BUDGET", "WHOLE_S", "Pace", "Watchdog",
           "under_seconds"]

PROMOTE_JOBS = 500  # jobs timed in the pool before a promotion is considered
CONTENDED = 10  # wall time over CPU time per job tolerated in the pool (GIL waits)
CHECK_JOBS = 1024  # inline jobs per look at the inline pace ...
CHECK_S = 0.02  # ... or inline seconds, whichever comes first
HARD_LIMIT = 0.05  # an inline slice longer than this demotes at once
TURN_BUDGET = 0.005  # inline seconds per poll-loop turn; the rest goes to the pool
# Jobs per inline slice (between two looks at the clock). A slice is one success summary
# for the listeners, so a bigger one spreads the summary's fixed cost; a slice of short jobs
# this long still fits the first duration bucket (0.5 ms), and the watchdog, not the slice,
# bounds how long a slice that starts blocking holds the loop.
MAX_SLICE = 1024
# An inline slice predicted to take at most this long is timed as a whole, not job by job
# (events.RunDurations.whole): half the smallest duration bucket (listeners/_metrics.py), so
# a slice that runs at half its measured speed still proves every job's bucket. A slice is
# cut to fit it unless that leaves it shorter than MIN_WHOLE jobs (each slice pays for its
# success summary).
WHOLE_S = 0.00025
MIN_WHOLE = 256
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
TICK = 0.015  # the watchdog's look at a running slice
IDLE_AFTER = 1.0  # seconds without inline work before the watchdog sleeps until the next
MAX_UNDER_US = 10_000.0  # past this a few jobs at the threshold pass the hard limit


def under_seconds(micros: float) -> float:
    """``WorkerSettings.inline_under`` (µs) in seconds, checked (0: never inline)."""
    if isinstance(micros, bool) or not isinstance(micros, int | float) or not (
            math.isfinite(micros) and 0 <= micros <= MAX_UNDER_US):
        raise ConfigError("inline_under", f"must be a number of microseconds from 0 to "
                                          f"{MAX_UNDER_US:g}, got {micros!r}")
    return micros / 1e6


class Pace:
    """One sync job type's run time per job, and whether its chunks run inline.

    ``pooled`` is called by handler threads (unlocked: a lost update only delays a decision),
    ``ran_inline`` and ``fits`` by the poll thread."""

    __slots__ = ("_backoff", "_cpu", "_jobs", "_seconds", "banned_until", "demotions", "inline",
                 "job_type", "per_job", "promotions", "under")

    def __init__(self, job_type: str, under: float) -> None:
        self.job_type = job_type
        self.under = under  # seconds per job
        self.inline = False
        self.per_job = under  # the last measured mean (seconds per job)
        self.banned_until = 0.0  # monotonic: no promotion before
        self.promotions = 0
        self.demotions = 0
        self._jobs = 0
        self._seconds = 0.0
        self._cpu = 0.0
        self._backoff = FIRST_BACKOFF

    def pooled(self, jobs: int, seconds: float, cpu: float, now: float) -> bool:
        """A chunk of ``jobs`` ran in the pool in ``seconds``, ``cpu`` of them on the CPU of
        its thread; True: just promoted."""
        if self.inline or now < self.banned_until:
            return False
        # Sums in locals: pool threads update this unlocked, so a reset by another thread
        # between the check and the division must not make it divide by zero.
        n = self._jobs + jobs
        total = self._seconds + seconds
        on_cpu = self._cpu + cpu
        if n < PROMOTE_JOBS:
            self._jobs, self._seconds, self._cpu = n, total, on_cpu
            return False
        self._jobs, self._seconds, self._cpu = 0, 0.0, 0.0
        mean = total / n
        short = self._short(mean, on_cpu / n)
        if not short:
            return False
        self.per_job = mean  # slices sized by the wall time: small until measured inline
        self.promotions += 1
        self.inline = True
        return True

    def ran_inline(self, jobs: int, seconds: float, cpu: float, now: float) -> bool:
        """A slice of ``jobs`` ran inline in ``seconds``, ``cpu`` of them on the CPU of the
        poll thread; True: just demoted."""
        if not self.inline:
            return False
        if seconds > HARD_LIMIT:
            self._demote(now, seconds / max(jobs, 1))
            return True
        self._jobs += jobs
        self._seconds += seconds
        self._cpu += cpu
        if self._jobs < CHECK_JOBS and self._seconds < CHECK_S:
            return False
        mean = self._seconds / self._jobs
        short = self._short(mean, self._cpu / self._jobs)
        self._jobs, self._seconds, self._cpu = 0, 0.0, 0.0
        if not short:
            self._demote(now, mean)
            return True
        self.per_job = mean
        return False

    def fits(self, seconds: float) -> int:
        """Jobs that fit in ``seconds`` at the measured pace (at least one, at most
        ``MAX_SLICE``)."""
        return max(1, min(MAX_SLICE, int(seconds / max(self.per_job, 1e-9))))

    def slice(self, seconds: float, jobs: int, whole: bool) -> tuple[int, float]:
        """The next slice's length, with ``seconds`` left in the turn and ``jobs`` left in
        the chunk, and the pace to time it as a whole at (0.0: job by job), when ``whole``
        (the listeners want summaries only): a slice predicted to take at most ``WHOLE_S``."""
        n = min(self.fits(seconds), jobs)
        if not whole:
            return n, 0.0
        per_job = max(self.per_job, 1e-9)
        most = int(WHOLE_S / per_job)
        if n <= most or most >= MIN_WHOLE:
            return min(n, most), per_job
        return n, 0.0

    def _short(self, mean: float, mean_cpu: float) -> bool:
        """Jobs that took ``mean`` seconds each, ``mean_cpu`` of them on the CPU, are short.
        A thread in a busy pool also waits for the GIL, and the poll thread of a busy machine
        for a CPU: their wall time overstates the handler, their CPU time does not, but misses
        blocking (hence the bound on the wall time too)."""
        under = self.under
        return mean < under or (mean_cpu < under and mean < CONTENDED * under)

    def _demote(self, now: float, per_job: float) -> None:
        self.inline = False
        self.per_job = per_job
        self.demotions += 1
        self._jobs, self._seconds, self._cpu = 0, 0.0, 0.0
        self.banned_until = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)


class Watchdog:
    """Cuts an inline slice that runs past ``limit``: a daemon thread that, while slices run,
    looks every ``tick`` at how long the current one has run and then sets
    ``flags[index]``, which the slice checks between jobs.

    The poll thread calls ``arm`` once per turn with inline work and sets ``started`` (its
    ``perf_counter`` at the slice's start; 0.0 between slices). After ``IDLE_AFTER`` without
    a turn the thread sleeps until the next ``arm``. A call that blocks in C (a sleep, a
    socket) releases the GIL, so the thread looks on time; a long pure-Python call lets it in
    at the interpreter's switch interval."""

    __slots__ = ("_closed", "_thread", "_wake", "asleep", "flags", "index", "limit", "started",
                 "tick", "turns")

    def __init__(self, flags: list[bool], index: int, limit: float = HARD_LIMIT,
                 tick: float = TICK) -> None:
        self.flags = flags
        self.index = index
        self.limit = limit
        self.tick = tick
        self.started = 0.0
        self.turns = 0
        self.asleep = False
        self._closed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sj-inline-watch", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """A poll-loop turn with inline work (poll thread)."""
        self.turns += 1  # before reading ``asleep``: the thread writes it before ``turns``
        if self.asleep:
            self.asleep = False
            self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _main(self) -> None:
        clock = time.perf_counter
        seen = -1
        active_at = clock()
        while not self._closed:
            time.sleep(self.tick)
            now = clock()
            started = self.started
            if started:
                active_at = now
                if now - started > self.limit and self.started == started:
                    self.flags[self.index] = True
                continue
            if self.turns != seen:
                seen = self.turns
                active_at = now
            elif now - active_at >= IDLE_AFTER:
                self._wake.clear()
                self.asleep = True
                if self.turns == seen:  # no ``arm`` since: it will see ``asleep``
                    self._wake.wait()
                self.asleep = False
                active_at = clock()
