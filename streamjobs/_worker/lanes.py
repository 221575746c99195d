"""Preferring higher priority lanes (priorities.py) in one worker.

Two mechanisms, both only for job types that declare lanes:

- **Intake gate** (``LaneGate``, poll thread): a lower lane may have at most ``buffer`` jobs
  taken and unfinished (``16 x concurrency``, at least 256, at most half the in-flight bound);
  under the ``strict`` policy none at all while a higher lane of its job type has jobs in
  flight, under ``weighted`` its weight's share of the buffer. The cap is split between the
  lane's partitions; a partition past its share is paused (held, like a wait tier) and resumed
  at half. So a low backlog never fills the worker's in-flight bound, which would pause every
  partition, the high lanes' too, and a high job is fetched as soon as it lands.
- **Task queue** (``LaneQueue``, slot threads): sync tasks queue per lane rank; a free thread
  takes the highest rank's task (``strict``) or picks ranks by weight (``weighted``: smooth
  weighted round robin, so lower ranks still get their share), and a thread running a lower
  lane's task looks at the queue between jobs and hands the rest of its task back when a
  higher task waits (``yield_to``; the task keeps its ordering lane, so order holds). A high
  job then waits for at most one job per thread, not for a whole fetched batch.

Async tasks waiting for a place on the event loop are kept the same way (``RankedDeque``),
and a lower lane's async task hands its rest back between jobs too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection, Mapping
from typing import Any

from .._priorities import PriorityLanes
from .._schemas.catalogue import Catalogue

__all__ = ["LaneGate", "LaneQueue", "RankedDeque", "lane_ranks"]

HELD_MS = 3_600_000.0  # a gated partition is held until released (re-extended while gated)

# topic -> (job type, rank 0 = highest, its lanes)
Ranks = Mapping[str, tuple[str, int, PriorityLanes]]


def lane_ranks(catalogue: Catalogue,
               job_types: Collection[str]) -> dict[str, tuple[str, int, PriorityLanes]]:
    """The lane topics of ``job_types`` (prefixed as in ``catalogue``) and their ranks."""
    out: dict[str, tuple[str, int, PriorityLanes]] = {}
    for name in job_types:
        job = catalogue.get(name)
        if job.lanes is not None:
            for rank, topic in enumerate(job.topics):
                out[topic] = (name, rank, job.lanes)
    return out


class LaneGate:
    """Pauses lower lanes' partitions while they would crowd out higher lanes."""

    def __init__(self, ranks: Ranks, concurrency: int, max_in_flight: int) -> None:
        self.ranks = ranks
        # Below the worker's in-flight bound (at which every partition, high lanes' too,
        # would pause), and large enough that resumes (a fetch round trip) keep threads busy.
        self.buffer = max(1, min(max(256, 16 * concurrency), max_in_flight // 2))

    def caps(self, in_flight: Mapping[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """(job type, rank) -> the most jobs that lane may have in flight now."""
        caps: dict[tuple[str, int], int] = {}
        for name, rank, lanes in set(self.ranks.values()):
            if rank == 0:
                continue  # the highest lane: only the worker's in-flight bound
            higher = any(in_flight.get((name, r), 0) for r in range(rank))
            if not higher:
                caps[(name, rank)] = self.buffer
            elif lanes.policy == "strict":
                caps[(name, rank)] = 0
            else:
                share = lanes.weights[rank] / sum(lanes.weights[:rank + 1])
                caps[(name, rank)] = max(1, int(self.buffer * share))
        return caps

    def apply(self, parts: Collection[Any], worker: Any, now_ms: float) -> None:
        """Hold or release the lane partitions among ``parts`` (each loop iteration). A lane's
        cap is shared by its partitions: a partition holding a whole fetched batch must not
        hold back the others (with ordering by partition each runs on one thread)."""
        ranks = self.ranks
        in_flight: dict[tuple[str, int], int] = {}
        count: dict[tuple[str, int], int] = {}
        mine = []
        for part in parts:
            lane = ranks.get(part.topic)
            if lane is not None:
                key = (lane[0], lane[1])
                in_flight[key] = in_flight.get(key, 0) + part.tracker.in_flight
                count[key] = count.get(key, 0) + 1
                mine.append((part, key))
        if not mine:
            return
        caps = self.caps(in_flight)
        for part, key in mine:
            cap = caps.get(key)
            if cap is None:
                continue
            own = part.tracker.in_flight
            share = max(1, cap // count[key]) if cap else 0
            if part.hold_until_ms <= now_ms:
                if own >= share:  # share 0: held whatever it has
                    worker.hold(part, now_ms + HELD_MS)
            elif share and own <= share // 2:
                part.hold_until_ms = now_ms  # due now: the next reconcile resumes it


class _Ranked:
    """Tasks in one deque per lane rank, and the choice of the next rank to serve."""

    def __init__(self, ranks: Ranks) -> None:
        self._rank = {topic: rank for topic, (_, rank, _) in ranks.items()}
        depth = 1 + max(self._rank.values(), default=0)
        weights = [1] * depth
        strict = True
        for _, rank, lanes in ranks.values():
            weights[rank] = max(weights[rank], lanes.weights[rank])
            strict = strict and lanes.policy == "strict"
        self.strict = strict
        self._weights = weights
        self._credit = [0] * depth
        self._queues: list[deque[Any]] = [deque() for _ in range(depth)]

    def rank(self, part: Any) -> int:
        """0 for topics without lanes: lanes never delay other job types."""
        return self._rank.get(part.topic, 0)

    def yield_to(self, part: Any) -> bool:
        """A task of a higher rank than ``part``'s waits (unlocked read: a hint)."""
        rank = self.rank(part)
        return rank > 0 and any(self._queues[r] for r in range(rank))

    def _pick(self) -> int | None:
        ready = [r for r, q in enumerate(self._queues) if q]
        if not ready:
            return None
        if self.strict or len(ready) == 1:
            return ready[0]
        # Smooth weighted round robin (nginx): each ready rank gains its weight, the richest
        # is served and pays the total.
        credit, weights = self._credit, self._weights
        total = 0
        for r in ready:
            credit[r] += weights[r]
            total += weights[r]
        best = max(ready, key=credit.__getitem__)
        credit[best] -= total
        return best


class LaneQueue(_Ranked):
    """The executor's queue of sync tasks (``put``/``get`` like ``queue.SimpleQueue``), by
    lane rank. ``None`` (shutdown) is served before everything."""

    def __init__(self, ranks: Ranks) -> None:
        super().__init__(ranks)
        self._stop: deque[None] = deque()
        self._cond = threading.Condition(threading.Lock())

    def put(self, task: Any) -> None:
        with self._cond:
            if task is None:
                self._stop.append(None)
            else:
                self._queues[self.rank(task[0])].append(task)
            self._cond.notify()

    def get(self) -> Any:
        with self._cond:
            while True:
                if self._stop:
                    return self._stop.popleft()
                rank = self._pick()
                if rank is not None:
                    return self._queues[rank].popleft()
                self._cond.wait()


class RankedDeque(_Ranked):
    """The async tasks waiting for a free place on the event loop (``append``/``popleft``
    like a ``deque``), by lane rank; used on the loop's thread only."""

    def append(self, task: Any) -> None:
        self._queues[self.rank(task[0])].append(task)

    def popleft(self) -> Any:
        rank = self._pick()
        if rank is None:
            raise IndexError("pop from an empty RankedDeque")
        return self._queues[rank].popleft()

    def __bool__(self) -> bool:
        return any(self._queues)
