"""The fixed catalogue of worker events and the bus that dispatches them.

The worker never logs, counts or probes anything itself: it emits events from this
catalogue and listeners (``streamjobs.listeners``) turn them into logs, metrics and
health state. Adding observability means adding a listener, not editing the worker.

Catalogue
---------
Job lifecycle (all carry job_id, job_type, topic, partition, offset, attempt):

- ``JobReceived``      decoded and accepted for running (may still wait for its due
                       time or for ordering)
- ``JobStarted``       the handler is about to run
- ``JobSucceeded``     handler returned; ``duration_s``, ``created_at_ms``
- ``JobFailed``        handler raised; ``duration_s``, ``error_class``,
                       ``error_message``, ``will_retry``
- ``JobRetried``       re-published to a retry topic; ``delay_s``, ``retry_topic``
- ``JobDeadLettered``  sent to the dead-letter topic; ``reason``, ``dlq_topic``
                       (job_id/job_type may be "" for undecodable poison records)
- ``JobTimedOut``      a handler ran past its timeout (``timeout_s``): an async one was
                       cancelled, a sync one abandoned in its thread; the job then fails with
                       ``JobTimeout`` (``JobFailed``, retry path)
- ``SlotStuck``        a sync handler's thread is stuck past its timeout: ``slot``, ``stuck``
                       (threads stuck now), ``limit``, ``replaced`` (the slot got a new thread)
- ``JobDuplicate``     not run: a duplicate of a unique job (or of a schedule's tick) first
                       seen at ``first_offset`` within the window; ``unique_key``; its offset
                       is acknowledged

Job summaries (the batch form of a per-job event, for listeners that only count):

- ``JobsReceived``     ``count`` jobs of ``job_type`` from one partition (``JobReceived``)
- ``JobsSucceeded``    jobs of ``job_type`` that succeeded back to back from ``started_at``
                       (wall clock): ``durations_s``, ``created_at_ms`` (``JobSucceeded``);
                       async jobs that ran concurrently carry ``finished_at`` per job. The
                       worker's ``durations_s`` is a ``RunDurations``: clock readings (each
                       job's end, or an inline slice's start and end), turned into durations
                       when read (``total`` costs nothing per job)

A listener subscribed to a summary type receives every matching job exactly once: as
summaries when the emitter batches, or as one-job summaries (``of``) of per-job events emitted
with ``emit``. The worker batches only when no listener wants the per-job event itself
(``EventBus.wants_each``), so counting listeners never force per-job event objects.

Consumer group:

- ``PartitionsAssigned`` / ``PartitionsRevoked`` / ``PartitionsLost``  ``partitions``
- ``CommitDone``       ``offsets`` as (topic, partition, next offset)
- ``CommitFailed``     ``error``
- ``TransactionAborted`` exactly-once: a commit was refused for this transaction only
                       (``error``) and aborted; ``rewound`` (topic, partition, committed
                       offset) partitions run again from there

Schedules (the worker that owns the schedule topic's partition fires them):

- ``SchedulerOwnership`` this worker became (``owner``) or stopped being the firing owner
- ``ScheduleFired``    one tick emitted: ``schedule``, ``job_type``, ``tick_ms``, ``job_id``,
                       ``late_s`` (how long after the tick it was emitted)
- ``ScheduleSkipped``  ticks not fired by the catch-up policy: ``schedule``, ``count``,
                       ``through_tick_ms``

Flow control (rate and concurrency limits, circuit breakers; README "Rate limits, concurrency
and circuit breakers"):

- ``PartitionThrottled`` a partition paused before a record of ``job_type``: ``reason``
                       (``rate_limit``, ``concurrency``, ``breaker``), ``resume_in_s`` (the
                       longest it stays paused; it resumes earlier when a slot or probe frees)
- ``BreakerChanged``   a job type's circuit moved: ``previous`` -> ``state`` (``closed``,
                       ``open``, ``half_open``), ``reason`` (``failures``, ``ratio``,
                       ``cooldown``, ``probe_succeeded``, ``probe_failed``), ``cooldown_s``

Worker process:

- ``WorkerStarted``    ``group_id``, ``topics``, ``concurrency``, ``pid``
- ``WorkerStopping``   ``reason``
- ``WorkerStopped``    ``reason``, ``ran_s``: shutdown finished (offsets committed, clients closed)
- ``LoopAlive``        poll loop heartbeat, at most ~once a second (``time.monotonic()``)
- ``InFlightChanged``  number of jobs currently running (may be rate-limited)
- ``LagSampled``       consumer lag of one assigned partition, every few seconds
- ``BrokerStatus``     whether the broker is reachable
- ``SlotFreed``        a stuck sync handler returned at last (result ignored): ``job_id``,
                       ``job_type``, ``ran_s``, ``stuck`` (threads still stuck), ``limit``
- ``InlineChanged``    a sync job type's jobs now run on the poll thread (``inline``) or back
                       in the pool: ``per_job_s`` (mean run time measured), ``reason``
                       (``short``, ``slow``, ``blocked``); _worker/inline.py

Hot path: the worker emits per job, as often as it runs jobs, so ``EventBus.wants`` and
``EventBus.emit`` are a single dict lookup plus a loop over a precomputed tuple.
The worker calls ``wants`` before building an event so unobserved events cost nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from operator import sub
from typing import TypeVar, overload

__all__ = [
    "BreakerChanged",
    "BrokerStatus",
    "CommitDone",
    "CommitFailed",
    "Event",
    "EventBus",
    "InFlightChanged",
    "InlineChanged",
    "JobDeadLettered",
    "JobDuplicate",
    "JobEvent",
    "JobFailed",
    "JobReceived",
    "JobRetried",
    "JobStarted",
    "JobSucceeded",
    "JobTimedOut",
    "JobsReceived",
    "JobsSucceeded",
    "LagSampled",
    "Listener",
    "LoopAlive",
    "PartitionThrottled",
    "PartitionsAssigned",
    "PartitionsLost",
    "PartitionsRevoked",
    "RunDurations",
    "ScheduleFired",
    "ScheduleSkipped",
    "SchedulerOwnership",
    "SlotFreed",
    "SlotStuck",
    "TransactionAborted",
    "WorkerStarted",
    "WorkerStopped",
    "WorkerStopping",
]

_log = logging.getLogger("streamjobs.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event in the catalogue."""


# --- job lifecycle -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobEvent(Event):
    job_id: str
    job_type: str
    topic: str
    partition: int
    offset: int
    attempt: int


@dataclass(frozen=True, slots=True)
class JobReceived(JobEvent):
    """Decoded and accepted for running (may wait for due time / ordering)."""


@dataclass(frozen=True, slots=True)
class JobStarted(JobEvent):
    """The handler is about to be called."""


@dataclass(frozen=True, slots=True)
class JobSucceeded(JobEvent):
    """``created_at_ms``: when the job was queued, as in ``JobsSucceeded``."""

    duration_s: float
    created_at_ms: int | None


@dataclass(frozen=True, slots=True)
class JobFailed(JobEvent):
    duration_s: float
    error_class: str
    error_message: str
    will_retry: bool


@dataclass(frozen=True, slots=True)
class JobRetried(JobEvent):
    delay_s: float
    retry_topic: str


@dataclass(frozen=True, slots=True)
class JobDeadLettered(JobEvent):
    """job_id/job_type may be "" for poison records that could not be decoded."""

    reason: str
    dlq_topic: str


@dataclass(frozen=True, slots=True)
class JobDuplicate(JobEvent):
    """Not run: the same ``unique_key`` was first seen at ``first_offset`` within the window."""

    unique_key: str
    first_offset: int


@dataclass(frozen=True, slots=True)
class JobTimedOut(JobEvent):
    """The handler ran past ``timeout_s`` (async: cancelled; sync: abandoned in its thread);
    a ``JobFailed`` follows."""

    timeout_s: float


@dataclass(frozen=True, slots=True)
class SlotStuck(JobEvent):
    """A sync handler's thread is stuck past ``timeout_s``; ``stuck`` threads are now, of at
    most ``limit`` replaced; ``replaced``: the slot got a new thread."""

    timeout_s: float
    slot: int
    stuck: int
    limit: int
    replaced: bool


# --- job summaries -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobsReceived(Event):
    """``count`` jobs of ``job_type`` read from ``topic``/``partition`` (batch ``JobReceived``)."""

    job_type: str
    topic: str
    partition: int
    count: int

    @classmethod
    def of(cls, e: JobReceived) -> JobsReceived:
        return cls(e.job_type, e.topic, e.partition, 1)


class RunDurations(Sequence[float]):
    """The durations of jobs run back to back from ``start`` (a ``time.perf_counter``
    reading), kept as clock readings until a listener reads them. A sequence of floats like
    the tuple it stands for (equal to it, same hash); the values are computed on first read,
    once, so a listener that needs only ``len``, ``total`` or ``ends_sum`` pays nothing per
    job (the metrics listener: when a whole run is shorter than the smallest bucket bound,
    every job in it was too). Two kinds:

    - ``RunDurations(start, ends)``: each job's end was read: job *i* took
      ``ends[i] - ends[i - 1]`` (the first ``ends[0] - start``). Exact.
    - ``RunDurations.whole(start, end, n, usual)``: the run was timed as a whole, as the
      worker times an inline slice predicted to take well under the smallest duration bucket
      (one clock reading per slice, not per job). Its length and so the durations' sum are
      exact, and so is every job's bucket whenever the run is shorter than the smallest
      bound. Each job is given ``usual`` (the handler's measured pace, at most the run's
      mean) but the last, given the rest: if the run overran (a call that blocked), the
      overrun shows as one slow job, where a duration histogram should show it."""

    __slots__ = ("_ends", "_n", "_usual", "_values", "end", "start")

    def __init__(self, start: float, ends: Sequence[float]) -> None:
        self.start = start
        self._ends: Sequence[float] | None = ends  # owned: never changed after the event
        self._n = len(ends)
        self.end = ends[-1] if ends else start
        self._usual = 0.0
        self._values: tuple[float, ...] | None = None

    @classmethod
    def whole(cls, start: float, end: float, n: int, usual: float) -> RunDurations:
        """``n`` jobs that ran from ``start`` to ``end``, timed as a whole."""
        run = cls(start, ())
        run._ends = None
        run._n = n
        run.end = end if n else start
        run._usual = usual
        return run

    @property
    def timed_each(self) -> bool:
        """Each job's end was read (not a run timed as a whole)."""
        return self._ends is not None

    @property
    def total(self) -> float:
        """The run's length: the sum of the durations, without adding them."""
        return self.end - self.start

    @property
    def first_end(self) -> float:
        """The first job's end; for a run timed as a whole, its start (a bound below it)."""
        ends = self._ends
        return ends[0] if ends else self.start

    @property
    def ends(self) -> Sequence[float]:
        """Each job's end (for a run timed as a whole, as its durations put them)."""
        ends = self._ends
        if ends is None:
            return list(accumulate(self.values(), initial=self.start))[1:]
        return ends

    def ends_sum(self) -> float:
        """Sum over jobs of (job's end - ``start``): one C-level pass, no float per job."""
        ends = self._ends
        if ends is None:  # usual x (1 + ... + n - 1) + the last job's end, the run's end
            n = self._n
            return self._share() * n * (n - 1) / 2 + self.total if n else 0.0
        return sum(ends) - len(ends) * self.start

    def values(self) -> tuple[float, ...]:
        v = self._values
        if v is None:
            ends = self._ends
            if ends is not None:
                v = tuple(map(sub, ends, chain((self.start,), ends)))
            elif self._n:
                share = self._share()
                v = (share,) * (self._n - 1) + (self.total - (self._n - 1) * share,)
            else:
                v = ()
            self._values = v
        return v

    def _share(self) -> float:
        """A job's duration but the last's, in a run timed as a whole."""
        return min(self._usual, self.total / self._n)

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> float: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[float, ...]: ...
    def __getitem__(self, i: int | slice) -> float | tuple[float, ...]:
        return self.values()[i]

    def __iter__(self) -> Iterator[float]:
        return iter(self.values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RunDurations):
            other = other.values()
        return self.values() == other if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        return f"RunDurations({self.values()!r})"


@dataclass(frozen=True, slots=True)
class JobsSucceeded(Event):
    """Jobs of ``job_type`` from ``topic``/``partition`` that ran back to back from
    ``started_at`` (``time.time()``) and succeeded: job *i* took ``durations_s[i]`` and
    finished at ``started_at + sum(durations_s[:i + 1])`` (batch ``JobSucceeded``), unless
    ``finished_at`` is given: then job *i* finished at ``finished_at[i]`` (async jobs that ran
    concurrently; ``started_at`` is then the first one's start). ``durations_s`` is a tuple
    or, from the worker's sync runs, a ``RunDurations`` (a sequence equal to that tuple).
    ``created_at_ms``: when each job was queued (the end-to-end histogram's start): for a job
    run from its job topic, its record's timestamp (a replayed or reprocessed job: when it
    went back on the topic, not its first creation); for a retried or delayed job, its
    created-at, so that its waits count. None: unknown."""

    job_type: str
    topic: str
    partition: int
    started_at: float
    durations_s: Sequence[float]
    created_at_ms: tuple[int | None, ...]
    finished_at: tuple[float, ...] = ()

    @classmethod
    def of(cls, e: JobSucceeded) -> JobsSucceeded:
        return cls(e.job_type, e.topic, e.partition, time.time() - e.duration_s,
                   (e.duration_s,), (e.created_at_ms,))


# Per-job event type -> its summary type.
SUMMARIES: dict[type[Event], type[Event]] = {JobReceived: JobsReceived,
                                             JobSucceeded: JobsSucceeded}


# --- consumer group ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionsAssigned(Event):
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PartitionsRevoked(Event):
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class PartitionsLost(Event):
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CommitDone(Event):
    offsets: tuple[tuple[str, int, int], ...]  # (topic, partition, next offset)


@dataclass(frozen=True, slots=True)
class CommitFailed(Event):
    error: str


@dataclass(frozen=True, slots=True)
class TransactionAborted(Event):
    error: str
    rewound: tuple[tuple[str, int, int], ...]  # (topic, partition, committed offset; -1 none)


# --- schedules -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SchedulerOwnership(Event):
    owner: bool


@dataclass(frozen=True, slots=True)
class ScheduleFired(Event):
    schedule: str
    job_type: str
    tick_ms: int
    job_id: str
    late_s: float


@dataclass(frozen=True, slots=True)
class ScheduleSkipped(Event):
    schedule: str
    count: int
    through_tick_ms: int


# --- flow control --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionThrottled(Event):
    topic: str
    partition: int
    job_type: str
    reason: str
    resume_in_s: float


@dataclass(frozen=True, slots=True)
class BreakerChanged(Event):
    job_type: str
    state: str
    previous: str
    reason: str
    cooldown_s: float


# --- worker process ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerStarted(Event):
    group_id: str
    topics: tuple[str, ...]
    concurrency: int
    pid: int


@dataclass(frozen=True, slots=True)
class WorkerStopping(Event):
    reason: str


@dataclass(frozen=True, slots=True)
class WorkerStopped(Event):
    """Shutdown finished; ``ran_s`` seconds since the worker started."""

    reason: str
    ran_s: float


@dataclass(frozen=True, slots=True)
class LoopAlive(Event):
    """Poll-loop heartbeat; ``at`` is ``time.monotonic()``."""

    at: float


@dataclass(frozen=True, slots=True)
class InFlightChanged(Event):
    count: int


@dataclass(frozen=True, slots=True)
class LagSampled(Event):
    topic: str
    partition: int
    lag: int


@dataclass(frozen=True, slots=True)
class SlotFreed(Event):
    """A stuck sync handler returned after ``ran_s``; ``stuck`` threads are still stuck."""

    job_id: str
    job_type: str
    ran_s: float
    stuck: int
    limit: int


@dataclass(frozen=True, slots=True)
class InlineChanged(Event):
    job_type: str
    inline: bool
    per_job_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class BrokerStatus(Event):
    reachable: bool
    detail: str = ""


# --- bus -----------------------------------------------------------------------------

Listener = Callable[[Event], None]
E = TypeVar("E", bound=Event)


def _catalogue() -> tuple[type[Event], ...]:
    """Every event class defined here (the base classes included), found by walking subclasses."""
    seen: list[type[Event]] = []
    stack: list[type[Event]] = [Event]
    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.append(cls)
            stack.extend(cls.__subclasses__())
    return tuple(seen)


class EventBus:
    """Synchronous dispatcher from event type to listeners.

    ``subscribe`` rebuilds a ``type -> tuple[listener, ...]`` table so that ``emit`` and
    ``wants`` are one dict lookup each. A listener subscribed to a base class (``JobEvent``,
    ``Event``) receives all its subclasses. A failing listener is logged once per listener
    and exception type, and never propagates into the worker.
    """

    __slots__ = ("_each", "_reported", "_subscriptions", "_table")

    def __init__(self) -> None:
        self._subscriptions: list[tuple[Listener, tuple[type[Event], ...]]] = []
        self._table: dict[type[Event], tuple[Listener, ...]] = {}
        self._each: dict[type[Event], bool] = {}
        self._reported: set[tuple[int, type[BaseException]]] = set()

    def subscribe(self, listener: Callable[[E], None], *types: type[E]) -> None:
        """Call ``listener`` for events of ``types`` (and their subclasses); no types = all.

        Typed so that ``bus.subscribe(on_failed, JobFailed)`` accepts a handler taking
        ``JobFailed``; a handler for all events must accept ``Event``.
        """
        for t in types:
            if not (isinstance(t, type) and issubclass(t, Event)):
                raise TypeError(f"subscribe: {t!r} is not an Event subclass")
        # Dispatch guarantees the listener only sees instances of ``types``.
        self._subscriptions.append((listener, types or (Event,)))  # type: ignore[arg-type]
        self._rebuild()

    def wants(self, event_type: type[Event]) -> bool:
        """True if at least one listener receives events of exactly ``event_type``."""
        listeners = self._table.get(event_type)
        if listeners is None:
            listeners = self._resolve(event_type)
        return bool(listeners)

    def wants_each(self, event_type: type[Event]) -> bool:
        """True if a listener wants events of ``event_type`` one by one (not only through
        their summary type): the emitter must then build one event per job."""
        each = self._each.get(event_type)
        if each is None:
            self.wants(event_type)
            each = self._each[event_type] = any(
                not getattr(fn, "_sj_summary", False) for fn in self._table[event_type])
        return each

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to its listeners, in subscription order."""
        listeners = self._table.get(type(event))
        if listeners is None:
            listeners = self._resolve(type(event))
        for listener in listeners:
            try:
                listener(event)
            except Exception as exc:  # a listener bug must never stop job processing
                self._report(listener, event, exc)

    def _rebuild(self) -> None:
        # Every catalogue type gets an entry (possibly empty) so the hot path never misses.
        self._each = {}
        self._table = {cls: self._matching(cls) for cls in _catalogue()}

    def _matching(self, cls: type[Event]) -> tuple[Listener, ...]:
        found = [listener for listener, types in self._subscriptions if issubclass(cls, types)]
        summary = SUMMARIES.get(cls)
        if summary is not None:
            # Listeners of the summary type only get one-job summaries of per-job events.
            found += [_as_summary(listener, summary) for listener, types in self._subscriptions
                      if issubclass(summary, types) and not issubclass(cls, types)]
        return tuple(found)

    def _resolve(self, cls: type[Event]) -> tuple[Listener, ...]:
        # An event class defined after the last subscribe (plugin, test): compute once, cache.
        listeners = self._matching(cls)
        self._table[cls] = listeners
        return listeners

    def _report(self, listener: Listener, event: Event, exc: Exception) -> None:
        key = (id(listener), type(exc))
        if key in self._reported:
            return
        self._reported.add(key)
        _log.error(
            "event listener %r raised on %s; further %s from it are suppressed",
            listener,
            type(event).__name__,
            type(exc).__name__,
            exc_info=exc,
        )


def _as_summary(listener: Listener, summary: type[Event]) -> Listener:
    of = summary.of  # type: ignore[attr-defined]

    def deliver(event: Event) -> None:
        listener(of(event))

    deliver._sj_summary = True  # type: ignore[attr-defined]
    name = getattr(listener, "__qualname__", repr(listener))
    deliver.__qualname__ = f"{name} (as {summary.__name__})"
    return deliver
