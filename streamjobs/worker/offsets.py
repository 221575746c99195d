"""Per-partition contiguous watermark: which offset is safe to commit.

Jobs of one partition finish out of order (per-key ordering, unordered mode, retries waiting
for their delivery acknowledgement). Kafka stores one number per partition, so the commit
position is the lowest offset not yet finished: everything below it is done. A crash re-runs
the finished jobs above the watermark (at-least-once), never skips an unfinished one.

``PartitionTracker`` is pure (no Kafka) and driven by the poll thread only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = ["PartitionTracker"]


class PartitionTracker:
    """Offsets received (``add``, increasing) and finished (``done``, any order)."""

    __slots__ = ("_finished", "_last", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # received, in order; head may be finished
        self._finished: set[int] = set()  # finished but not yet at the head
        self._last: int | None = None  # highest offset received

    def add(self, offset: int) -> None:
        """A record was taken for processing. Offsets must increase (gaps are fine)."""
        if self._last is not None and offset <= self._last:
            raise ValueError(f"offset {offset} added after {self._last}")
        self._pending.append(offset)
        self._last = offset

    def add_many(self, offsets: Iterable[int]) -> None:
        for offset in offsets:
            self.add(offset)

    def done(self, offset: int) -> None:
        """The record at ``offset`` is finished. Unknown offsets are ignored (e.g. a late
        completion after the partition was revoked and re-assigned)."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            finished = self._finished
            # Drain finished offsets that are now at the head.
            while pending and pending[0] in finished:
                finished.discard(pending.popleft())
        elif self._last is not None and offset <= self._last and (
                pending and offset > pending[0]):
            self._finished.add(offset)

    def done_many(self, offsets: Iterable[int]) -> None:
        for offset in offsets:
            self.done(offset)

    def commit_position(self) -> int | None:
        """Offset to commit: the lowest unfinished offset, or last received + 1 when all are
        finished; None when nothing was ever received."""
        if self._pending:
            return self._pending[0]
        return None if self._last is None else self._last + 1

    @property
    def in_flight(self) -> int:
        """Records received and not finished."""
        return len(self._pending) - len(self._finished)

    @property
    def last(self) -> int | None:
        return self._last
