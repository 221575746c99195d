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

Consumer group:

- ``PartitionsAssigned`` / ``PartitionsRevoked`` / ``PartitionsLost``  ``partitions``
- ``CommitDone``       ``offsets`` as (topic, partition, next offset)
- ``CommitFailed``     ``error``

Worker process:

- ``WorkerStarted``    ``group_id``, ``topics``, ``concurrency``, ``pid``
- ``WorkerStopping``   ``reason``
- ``LoopAlive``        poll loop heartbeat, at most ~once a second (``time.monotonic()``)
- ``InFlightChanged``  number of jobs currently running (may be rate-limited)
- ``LagSampled``       consumer lag of one assigned partition, every few seconds
- ``BrokerStatus``     whether the broker is reachable

Hot path: the worker emits per job at >100k jobs/s, so ``EventBus.wants`` and
``EventBus.emit`` are a single dict lookup plus a loop over a precomputed tuple.
The worker calls ``wants`` before building an event so unobserved events cost nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "BrokerStatus",
    "CommitDone",
    "CommitFailed",
    "Event",
    "EventBus",
    "InFlightChanged",
    "JobDeadLettered",
    "JobEvent",
    "JobFailed",
    "JobReceived",
    "JobRetried",
    "JobStarted",
    "JobSucceeded",
    "LagSampled",
    "Listener",
    "LoopAlive",
    "PartitionsAssigned",
    "PartitionsLost",
    "PartitionsRevoked",
    "WorkerStarted",
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

    __slots__ = ("_reported", "_subscriptions", "_table")

    def __init__(self) -> None:
        self._subscriptions: list[tuple[Listener, tuple[type[Event], ...]]] = []
        self._table: dict[type[Event], tuple[Listener, ...]] = {}
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
        self._table = {cls: self._matching(cls) for cls in _catalogue()}

    def _matching(self, cls: type[Event]) -> tuple[Listener, ...]:
        return tuple(listener for listener, types in self._subscriptions if issubclass(cls, types))

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
