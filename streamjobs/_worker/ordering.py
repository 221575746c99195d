"""Lanes: the ordering guarantee, as "at most one task per lane, chunks in order".

A lane is a partition (ordering=partition) or a (partition, key) pair (ordering=key). The poll
thread ``offer``s a lane's next chunk (its records of one batch, in offset order); if the lane
is idle the caller starts one task for it, otherwise it queues behind the running task. When a
task finishes its chunks it ``take``s what queued meanwhile and keeps going in the same
thread, so the next record of a busy lane starts at once, without a round trip through the
poll loop. One short lock per chunk, not per record. ``dispatch`` splits a partition's jobs
into chunks and lanes by the ``ordering`` setting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Hashable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .context import JobContext
    from .partition import Part

__all__ = ["Chunk", "Lanes", "dispatch"]

# A lane's records of one batch, in offset order, and their offsets (the same order; a
# ``range`` when contiguous, which the tracker retires in O(1)).
Chunk = tuple[list["JobContext"], Sequence[int]]
Submit = Callable[[Any, Any, Chunk, bool], None]  # (part, lane or None, chunk, is async)
# (part, one key's jobs, their offsets) -> those of them to run now, and their offsets
KeepBack = Callable[[Any, list["JobContext"], list[int]], tuple[list["JobContext"], list[int]]]

T = TypeVar("T")


class Lanes(Generic[T]):
    __slots__ = ("_busy", "_lock")

    def __init__(self) -> None:
        self._busy: dict[Hashable, list[T]] = {}
        self._lock = threading.Lock()

    def offer(self, lane: Hashable, chunk: T) -> bool:
        """Queue ``chunk`` on ``lane``. True: the lane was idle and is now busy; the caller
        must start a task that runs ``chunk`` and then calls ``take``."""
        with self._lock:
            queue = self._busy.get(lane)
            if queue is None:
                self._busy[lane] = []
                return True
            queue.append(chunk)
            return False

    def take(self, lane: Hashable) -> list[T] | None:
        """Chunks queued on ``lane`` since the task started (the task keeps the lane), or
        None: the lane is idle again and the task must end."""
        with self._lock:
            queue = self._busy[lane]
            if queue:
                self._busy[lane] = []
                return queue
            del self._busy[lane]
            return None

    def release(self, lane: Hashable) -> int:
        """End the lane's task early (stop, revoke); queued chunks are dropped. Returns their
        number."""
        with self._lock:
            queue = self._busy.pop(lane, None)
            return len(queue) if queue else 0

    def busy(self) -> int:
        return len(self._busy)

    def is_busy(self, lane: Hashable) -> bool:
        """A task runs (or has queued chunks on) ``lane``."""
        with self._lock:
            return lane in self._busy


def dispatch(part: Part, jobs: list[JobContext], offsets: Sequence[int] | None, ordering: str,
             lanes: Lanes[Chunk], submit: Submit, concurrency: int,
             held: Container[bytes | None] = (), keep_back: KeepBack | None = None) -> None:
    """Hand a partition's jobs to lanes and ``submit``: a batch just taken, with ``offsets``
    theirs in increasing order, or (``offsets`` None) wait-tier jobs that fell due, in due
    order. With ``key`` ordering the jobs of a key in ``held`` go to ``keep_back`` instead
    (``--ordering key-strict``, keyhold.py), which returns those to run anyway."""
    taken = offsets is not None
    if offsets is None:
        offsets = [ctx.offset for ctx in jobs]
    if ordering == "partition":
        n = len(offsets)
        if taken and n > 1 and offsets[-1] - offsets[0] == n - 1:
            # Increasing and as many as their span: contiguous, so the chunk finishes as
            # one range, in O(1). (Due wait-tier jobs come in wake order: never a range.)
            offsets = range(offsets[0], offsets[-1] + 1)
        chunk: Chunk = (jobs, offsets)
        if lanes.offer(part, chunk):
            part.tasks += 1
            submit(part, part, chunk, part.is_async)
        return
    if ordering == "key":
        by_key: dict[bytes | None, tuple[list[JobContext], list[int]]] = {}
        for ctx, offset in zip(jobs, offsets, strict=True):
            group = by_key.get(ctx.key)
            if group is None:
                group = by_key[ctx.key] = ([], [])
            group[0].append(ctx)
            group[1].append(offset)
        for key, (group_jobs, group_offsets) in by_key.items():
            if key is None:
                _unordered(part, group_jobs, group_offsets, submit, concurrency)
                continue
            if key in held and keep_back is not None:
                group_jobs, group_offsets = keep_back(part, group_jobs, group_offsets)
                if not group_jobs:
                    continue
            lane: Hashable = (part, key)
            chunk = (group_jobs, group_offsets)
            if lanes.offer(lane, chunk):
                part.tasks += 1
                submit(part, lane, chunk, part.is_async)
        return
    _unordered(part, jobs, offsets, submit, concurrency)


def _unordered(part: Part, jobs: list[JobContext], offsets: Sequence[int], submit: Submit,
               concurrency: int) -> None:
    # Small batches: one job per task (a slow job delays nobody). Big batches: a few
    # tasks per thread, so per-task overhead is spread over many jobs. A handler promoted to
    # the poll thread (inline.py) runs them one after the other anyway: one task.
    n = len(jobs)
    pace = part.pace
    size = n if pace is not None and pace.inline else max(1, n // (4 * concurrency))
    for i in range(0, n, size):
        part.tasks += 1
        submit(part, None, (jobs[i:i + size], offsets[i:i + size]), part.is_async)
