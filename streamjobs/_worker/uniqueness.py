"""Dropping duplicates of unique jobs and of schedule ticks, per assigned partition.

Which records are checked: job types with a ``unique`` policy (by record key or by job id), and
records fired by a schedule (``sj-schedule``), checked by job id for ``TICK_WINDOW_S`` so that a
tick emitted again after a scheduler failover runs once. Records re-published on purpose by
``dlq reprocess`` or ``replay range`` (they carry ``sj-reprocessed-from`` / ``sj-replayed-from``)
are never duplicates. Only records read from a job topic are checked; retries come through wait
tiers with attempt > 1 and are the same job, not a duplicate.

On assignment of a checked job-topic partition the seen set is read back from partition p of
``<job topic>.unique`` (compacted, entries of the last window only; a bounded read on the poll
thread, in the rebalance callback, before any record of the partition is taken). Each first
occurrence is written there (same partition number) through the worker's producer; a duplicate
is acknowledged at once (its offset is finished) and reported as ``JobDuplicate``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from .. import _headers as h
from .._config import KafkaConfig
from .._connection import admin as admin_client
from .._names import unique_topic
from .._scan import Range, scan, watermarks
from .._unique import TICK_WINDOW_S, SeenEntry, SeenSet, UniquePolicy
from ..errors import KafkaError
from ..events import EventBus, JobDuplicate
from .context import JobContext
from .outbox import Outgoing
from .routes import Routes

if TYPE_CHECKING:
    from .partition import Part

__all__ = ["Uniqueness"]


class Host(Protocol):
    """What the filter needs of the worker that runs it (the runner; tests pass a stand-in)."""

    outbox: Any

    def finish(self, part: Part, offset: int) -> None: ...

_TICK = UniquePolicy(by="job_id", window_s=TICK_WINDOW_S)
_EXEMPT = (h.REPROCESSED_FROM, h.REPLAYED_FROM)
LOAD_RETRY_S = 15.0


class Uniqueness:
    """The worker's duplicate check: which job topics it applies to, and the filter."""

    def __init__(self, worker: Host, routes: Routes, scheduled: set[str],
                 kafka: KafkaConfig, bus: EventBus) -> None:
        self.worker = worker
        self.kafka = kafka
        self.bus = bus
        self.policies: dict[str, UniquePolicy] = {}
        self.scheduled = scheduled  # job types some schedule fires
        self.keep_ms: dict[str, int] = {}  # checked job topic -> longest window
        for route in routes.by_type.values():
            job = route.job
            windows = []
            if job.unique is not None:
                self.policies[job.name] = job.unique
                windows.append(job.unique.window_ms)
            if job.name in scheduled:
                windows.append(_TICK.window_ms)
            if windows:
                self.keep_ms[route.topic] = max(self.keep_ms.get(route.topic, 0), *windows)
        self._admin: Any = None

    def topics(self) -> list[str]:
        """The state topics the worker needs."""
        return sorted(unique_topic(t) for t in self.keep_ms)

    def load(self, topic: str, partition: int) -> SeenSet | None:
        """The seen set of a job-topic partition, read back from its state topic (None: the
        topic is not checked)."""
        keep = self.keep_ms.get(topic)
        if keep is None:
            return None
        seen = SeenSet(keep)
        state = unique_topic(topic)
        if self._admin is None:
            self._admin = admin_client(self.kafka)
        low, high = self._watermarks(state, partition)
        if high > low:
            for m in scan(self.kafka, [Range(state, partition, low, high)]):
                entry = SeenEntry.from_bytes(m.value())
                key = m.key()
                if entry is not None and key is not None:
                    seen.load(key.decode("utf-8", "replace"), entry)
        seen.prune(int(time.time() * 1000))
        return seen

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        # A topic created moments ago may not have a leader yet (NOT_LEADER_FOR_PARTITION).
        deadline = time.monotonic() + LOAD_RETRY_S
        while True:
            try:
                return watermarks(self._admin, self.kafka, [(topic, partition)])[(topic, partition)]
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def filter(self, part: Part, seen: SeenSet, jobs: list[JobContext],
               offsets: list[int]) -> tuple[list[JobContext], list[int]]:
        """The jobs to run; duplicates are finished here and reported."""
        keep_jobs: list[JobContext] = []
        keep_offsets: list[int] = []
        now_ms = int(time.time() * 1000)
        for ctx, offset in zip(jobs, offsets, strict=True):
            found = self._key(ctx)
            if found is None:
                keep_jobs.append(ctx)
                keep_offsets.append(offset)
                continue
            key, policy = found
            entry = SeenEntry(offset, ctx.created_at_ms or now_ms, ctx.job_id)
            first = seen.check(key, entry, policy.window_ms)
            if first is None:
                keep_jobs.append(ctx)
                keep_offsets.append(offset)
                self._persist(part, key, entry)
                continue
            self.worker.finish(part, offset)
            if self.bus.wants(JobDuplicate):
                self.bus.emit(JobDuplicate(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                           offset, ctx.attempt, key, first.offset))
        return keep_jobs, keep_offsets

    def _key(self, ctx: JobContext) -> tuple[str, UniquePolicy] | None:
        hdrs = ctx.headers
        if any(name in _EXEMPT for name, _ in hdrs):
            return None
        policy = self.policies.get(ctx.job_type)
        if policy is None:
            if ctx.job_type not in self.scheduled or h.get(hdrs, h.SCHEDULE) is None:
                return None
            policy = _TICK
        if policy.by == "key":
            if ctx.key is None:
                return None
            return f"{ctx.job_type}/k:{ctx.key.decode('utf-8', 'backslashreplace')}", policy
        return f"{ctx.job_type}/i:{ctx.job_id}", policy

    def _persist(self, part: Part, key: str, entry: SeenEntry) -> None:
        # Written alongside the run: the job's offset does not wait for it (docs/catalogue.md).
        self.worker.outbox.send(Outgoing(unique_topic(part.topic), key.encode(),
                                         entry.to_bytes(), [], _nothing,
                                         partition=part.partition))


def _nothing() -> None:
    pass
