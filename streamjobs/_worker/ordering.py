"""Lanes: the ordering guarantee, as "at most one task per lane, chunks in order".

A lane is a partition (ordering=partition) or a (partition, key) pair (ordering=key). The poll
thread ``offer``s a lane's next chunk (its records of one batch, in offset order); if the lane
is idle the caller starts one task for it, otherwise it queues behind the running task. When a
task finishes its chunks it ``take``s what queued meanwhile and keeps going in the same
thread, so the next record of a busy lane starts at once, without a round trip through the
poll loop. One short lock per chunk, not per record.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Lanes"]

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
