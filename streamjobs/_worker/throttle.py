"""Flow control in the worker: rate limits, concurrency limits and circuit breakers per job type.

Every decision is taken at intake, record by record, on the poll thread, and every "not now" is
the same act: the record is not taken and its partition is *held* (paused until a time, then
resumed by the poll loop; the pause seeks back to the record, so nothing is lost, skipped or
reordered). Nothing ever sleeps, and workers exchange nothing.

- **Rate limit** (``rate_limit = "50/s"``): each partition of the job type's topic owns an equal
  share of the limit (limit / partition count), as a token bucket in whichever worker holds the
  partition. The group's rate is the sum of the shares of the partitions that have work, so it
  never exceeds the limit; a rebalance adds at most one job per moved partition (a new bucket
  holds one token), and partitions with no backlog leave their share unused (uneven keys run
  below the limit). Retries and delayed jobs falling due are not held, but they are charged to
  a bucket of their type (it may go into debt), so the job topic slows down for them.
- **Concurrency** (``concurrency = 4``): jobs of the type taken and not finished, per process.
  A record beyond it holds its partition until a job of the type finishes (or a second
  passes, to look again). Retries falling due count but are not held.
- **Circuit breaker** (``breaker = {...}``, ``breaker.py``): open, the type's partitions (job
  topic and its wait tiers) are held for the cool-down; half-open, one record is let through
  and the others wait for its outcome. A type with a breaker and no ``concurrency`` is limited
  to the worker's concurrency, so that no records wait taken in memory: when the circuit
  opens, only the jobs already running finish, and the rest are still in Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .. import _headers as h
from .._limits import RateLimit
from .._schemas.catalogue import JobType
from ..events import BreakerChanged, EventBus, PartitionThrottled
from .breaker import HALF_OPEN, OPEN, Breaker, Transition
from .keyhold import HELD_CLASS

__all__ = ["BURST_S", "FETCH_WAIT_MS", "RESUME_S", "Throttle", "TokenBucket", "bucket_for"]

BURST_S = 1.0  # a partition's bucket holds at most this long a stretch of its share
RESUME_S = 0.1  # a throttled partition resumes once this much of its share has refilled
# A resumed partition joins the consumer's next fetch, which waits for the one in flight (up to
# fetch.wait.max.ms, librdkafka's 500 ms by default): workers of throttled types use this.
FETCH_WAIT_MS = 50
_EPS = 1e-9
RECHECK_S = 1.0  # a partition held for a slot or a probe looks again after this at the latest


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; a job takes one. Times in seconds."""

    __slots__ = ("at", "capacity", "rate", "tokens")

    def __init__(self, rate: float, capacity: float, tokens: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = tokens
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def take(self, now: float) -> bool:
        """Take a token if there is a whole one."""
        self._refill(now)
        if self.tokens >= 1.0 - _EPS:  # at ready_at() a token is there, float sums or not
            self.tokens -= 1.0
            return True
        return False

    def charge(self, now: float, n: float) -> None:
        """Take ``n`` tokens whatever is left (a debt that later takes wait out)."""
        self._refill(now)
        self.tokens -= n

    def ready_at(self, now: float, need: float) -> float:
        """When the bucket will hold ``need`` tokens."""
        self._refill(now)
        return now if self.tokens >= need else now + (need - self.tokens) / self.rate


def bucket_for(limit: RateLimit, partitions: int, now: float) -> TokenBucket:
    """A partition's bucket: its share of ``limit``, starting with one token (so taking over a
    partition adds at most one job to the group's rate)."""
    share = limit.per_second / max(1, partitions)
    capacity = max(1.0, share * BURST_S)
    return TokenBucket(share, capacity, 1.0, now)


class Throttle:
    """The worker's gate for job types with a rate limit, a concurrency limit or a breaker."""

    def __init__(self, jobs: Iterable[JobType], partitions: Mapping[str, int], bus: EventBus,
                 pauses: Any, parts: Callable[[], Iterable[Any]], concurrency: int) -> None:
        jobs = [j for j in jobs if j.rate_limit or j.concurrency or j.breaker]
        self.rates = {j.name: j.rate_limit for j in jobs if j.rate_limit is not None}
        self.limits = {j.name: j.concurrency or concurrency for j in jobs
                       if j.concurrency is not None or j.breaker is not None}
        self.breakers = {j.name: Breaker(j.name, j.breaker) for j in jobs
                         if j.breaker is not None}
        self.topic_of = {j.name: j.topic for j in jobs}
        self.topics = frozenset(self.topic_of.values())  # job topics whose records are gated
        self.running = dict.fromkeys(self.limits, 0)  # taken, not finished (concurrency)
        self._watched = frozenset(self.limits) | frozenset(self.breakers)
        self._partitions = partitions
        self._bus = bus
        self._pauses = pauses  # hold(part, until_ms), pause(parts): partition.py
        self._parts = parts
        self._buckets: dict[tuple[Any, str], TokenBucket] = {}
        self._tracked: dict[Any, dict[int, tuple[str, int]]] = {}  # part -> offset -> (type,
        self._held: dict[str, set[Any]] = {}  # epoch); parts waiting for a slot or a probe

    @classmethod
    def of(cls, jobs: Sequence[JobType], partitions: Mapping[str, int], bus: EventBus,
           pauses: Any, parts: Callable[[], Iterable[Any]],
           concurrency: int) -> Throttle | None:
        """None when no job type has a limit or a breaker (the worker then asks nothing)."""
        if not cls.wanted(jobs):
            return None
        return cls(jobs, partitions, bus, pauses, parts, concurrency)

    @staticmethod
    def wanted(jobs: Iterable[JobType]) -> bool:
        """Does any of ``jobs`` have a rate limit, a concurrency limit or a breaker?"""
        return any(j.rate_limit or j.concurrency or j.breaker for j in jobs)

    # -- intake -------------------------------------------------------------------------------

    def admit(self, part: Any, m: Any, offset: int) -> bool:
        """May the record ``m`` at ``offset`` of ``part`` be taken now? If not, ``part`` is
        held (the caller leaves the record and the rest of the batch for that partition)."""
        job_type = part.single_type or _type_of(m)
        if job_type is None or job_type not in self.topic_of:
            return True
        now = time.time()
        until, reason = 0.0, ""
        breaker = self.breakers.get(job_type)
        if breaker is not None:
            blocked, moved = breaker.blocked_until(now)
            if moved is not None:
                self._changed(breaker, moved, now)
            # Wait tiers are held only while open: a retry falling due may be the probe.
            if blocked is not None and (part.wait is None or breaker.state == OPEN):
                until, reason = blocked, "breaker"
                if breaker.state == HALF_OPEN:
                    self._held.setdefault(job_type, set()).add(part)
        if part.wait is not None:
            if until:
                self._throttle(part, job_type, until, reason, now)
                return False
            return True
        limit = self.limits.get(job_type)
        if not until and limit is not None and self.running[job_type] >= limit:
            until, reason = now + RECHECK_S, "concurrency"
            self._held.setdefault(job_type, set()).add(part)
        rate = self.rates.get(job_type)
        if not until and rate is not None:
            bucket = self._bucket(part, job_type, rate, now)
            if not bucket.take(now):
                until = bucket.ready_at(now, min(bucket.capacity, max(1.0, bucket.rate * RESUME_S)))
                reason = "rate_limit"
        if until:
            self._throttle(part, job_type, until, reason, now)
            return False
        if breaker is not None:
            breaker.started(now)
        if job_type in self._watched:
            self._track(part, offset, job_type, breaker)
        return True

    def waited(self, part: Any, jobs: Iterable[Any]) -> None:
        """Wait-tier jobs (retries, delayed jobs) fell due and run now: they count toward the
        concurrency limit, may be the half-open probe, and are charged to a bucket."""
        now = time.time()
        for ctx in jobs:
            job_type = ctx.job_type
            if job_type not in self.topic_of:
                continue
            if job_type in self.rates:
                bucket = next((b for (_, t), b in self._buckets.items() if t == job_type), None)
                if bucket is not None:
                    bucket.charge(now, 1.0)
            breaker = self.breakers.get(job_type)
            if breaker is not None:
                _, moved = breaker.blocked_until(now)  # an ended cool-down: this is the probe
                if moved is not None:
                    self._changed(breaker, moved, now)
                breaker.started(now)
            if job_type in self._watched:
                self._track(part, ctx.offset, job_type, breaker)

    def _track(self, part: Any, offset: int, job_type: str, breaker: Breaker | None) -> None:
        tracked = self._tracked.setdefault(part, {})
        again = offset in tracked  # a job admitted twice (key-strict's waiting jobs) counts once
        tracked[offset] = (job_type, breaker.epoch if breaker is not None else 0)
        if job_type in self.running and not again:
            self.running[job_type] += 1

    def _bucket(self, part: Any, job_type: str, rate: RateLimit, now: float) -> TokenBucket:
        bucket = self._buckets.get((part, job_type))
        if bucket is None:
            bucket = self._buckets[(part, job_type)] = bucket_for(
                rate, self._partitions.get(part.topic, 1), now)
        return bucket

    def _hold(self, part: Any, until_ms: float) -> None:
        """Pause ``part`` until ``until_ms`` at once: the pause seeks back to its first record
        not taken, and a release (an earlier time) finds it paused, so resuming is the poll
        loop's usual job."""
        self._pauses.hold(part, until_ms)
        if not part.paused_kafka:
            self._pauses.pause([part])

    def _throttle(self, part: Any, job_type: str, until: float, reason: str,
                  now: float) -> None:
        self._hold(part, until * 1000.0)
        if self._bus.wants(PartitionThrottled):
            self._bus.emit(PartitionThrottled(part.topic, part.partition, job_type, reason,
                                              until - now))

    # -- outcomes -----------------------------------------------------------------------------

    def finished(self, part: Any, done: Sequence[int], failed: Iterable[Any] | None) -> None:
        """A completion: ``done`` offsets succeeded, ``failed`` (ctx, failure, decision) not."""
        tracked = self._tracked.get(part)
        if not tracked:
            return
        now = time.time()
        if failed:
            for ctx, failure, _decision in failed:
                # A job held behind its key never ran: no outcome for the breaker.
                held = failure is not None and failure.error_class == HELD_CLASS
                self._end(part, tracked, ctx.offset, None if held else False, now)
        if len(done) > len(tracked):
            if not isinstance(done, range):
                done = frozenset(done)  # type: ignore[assignment]
            ok = [o for o in tracked if o in done]
        else:
            ok = [o for o in done if o in tracked]
        for offset in ok:
            self._end(part, tracked, offset, True, now)

    def release(self, part: Any, offset: int) -> None:
        """A record finished without an outcome (a duplicate, an acknowledged failure)."""
        tracked = self._tracked.get(part)
        if tracked:
            self._end(part, tracked, offset, None, time.time())

    def _end(self, part: Any, tracked: dict[int, tuple[str, int]], offset: int,
             ok: bool | None, now: float) -> None:
        entry = tracked.pop(offset, None)
        if entry is None:
            return
        job_type, epoch = entry
        if job_type in self.running:
            self.running[job_type] -= 1
            self._release(job_type, now)
        breaker = self.breakers.get(job_type)
        if breaker is not None and ok is not None:
            moved = breaker.record(ok, epoch, now)
            if moved is not None:
                self._changed(breaker, moved, now)

    def _changed(self, breaker: Breaker, t: Transition, now: float) -> None:
        self._bus.emit(BreakerChanged(breaker.job_type, t.state, t.previous, t.reason,
                                      breaker.policy.cooldown_s))
        if t.state == OPEN:
            topic = self.topic_of[breaker.job_type]
            until = breaker.open_until
            for part in list(self._parts()):
                if part.job_topic == topic and not part.gone and not part.revoked:
                    self._throttle(part, breaker.job_type, max(until, part.hold_until_ms / 1000),
                                   "breaker", now)
        else:
            self._release(breaker.job_type, now)

    def _release(self, job_type: str, now: float) -> None:
        """Resume the partitions waiting for a slot or a probe of ``job_type``."""
        held = self._held.pop(job_type, None)
        breaker = self.breakers.get(job_type)
        for part in held or ():
            if part.gone:
                continue
            if not part.paused_kafka or (breaker is not None and breaker.state == OPEN):
                continue  # resumed already, or held by the opening until the cool-down ends
            self._hold(part, now * 1000.0)

    def forget(self, part: Any) -> None:
        """``part`` left the assignment: its jobs no longer count."""
        now = time.time()
        tracked = self._tracked.pop(part, None)
        for job_type, _epoch in (tracked or {}).values():
            if job_type in self.running:
                self.running[job_type] -= 1
                self._release(job_type, now)
        for key in [k for k in self._buckets if k[0] is part]:
            del self._buckets[key]
        for held in self._held.values():
            held.discard(part)

    @staticmethod
    def next_wake_ms(parts: Iterable[Any]) -> float | None:
        """The earliest time a held partition resumes (the poll loop waits no longer)."""
        return min((p.hold_until_ms for p in parts if p.hold_until_ms > 0), default=None)


def _type_of(m: Any) -> str | None:
    type_b = h.scan(m.headers())[0]
    return type_b.decode("utf-8", "replace") if type_b is not None else None
