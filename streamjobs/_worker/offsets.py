"""Per-partition contiguous watermark: which offset is safe to commit.

Jobs of one partition finish out of order (per-key ordering, unordered mode, retries waiting
for their delivery acknowledgement). Kafka stores one number per partition, so the commit
position is the lowest offset not yet finished: everything below it is done. A crash re-runs
the finished jobs above the watermark (at-least-once), never skips an unfinished one.

``PartitionTracker`` is pure (no Kafka) and driven by the poll thread only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import pairwise

__all__ = ["PartitionTracker"]

_COMPACT_AT = 4096  # drop the finished head of the list once it is this long (and > half)


class PartitionTracker:
    """Offsets received (``add``, increasing) and finished (``done``, any order).

    Received offsets live in one sorted list with a head index (everything before the head is
    finished), so a batch is added with one C-level list operation and, when it finishes in
    order (the usual case), retired by moving the head: a chunk of contiguous offsets finishes
    as one range (``done_range``: two comparisons whatever its length).
    """

    __slots__ = ("_finished", "_head", "_last", "_pending")

    def __init__(self) -> None:
        self._pending: list[int] = []  # received, in order; [_head:] not yet at the watermark
        self._head = 0
        self._finished: set[int] = set()  # finished but not yet at the head
        self._last: int | None = None  # highest offset received

    def add(self, offset: int) -> None:
        """A record was taken for processing. Offsets must increase (gaps are fine)."""
        if self._last is not None and offset <= self._last:
            raise ValueError(f"offset {offset} added after {self._last}")
        self._pending.append(offset)
        self._last = offset

    def add_many(self, offsets: Sequence[int]) -> None:
        """``add`` each of ``offsets`` (increasing)."""
        if not offsets:
            return
        if type(offsets) is range and offsets.step == 1:
            self.add_range(offsets.start, offsets.stop)
            return
        last = self._last
        if (last is not None and offsets[0] <= last) or not _increasing(offsets):
            for offset in offsets:  # raises at the first offset out of order
                self.add(offset)
            return
        self._pending += offsets
        self._last = offsets[-1]

    def add_range(self, start: int, stop: int) -> None:
        """``add`` each of ``start .. stop - 1`` (no check per offset: a range increases)."""
        if stop <= start:
            return
        if self._last is not None and start <= self._last:
            raise ValueError(f"offset {start} added after {self._last}")
        self._pending += range(start, stop)
        self._last = stop - 1

    def done(self, offset: int) -> None:
        """The record at ``offset`` is finished. Unknown offsets are ignored (e.g. a late
        completion after the partition was revoked and re-assigned)."""
        pending = self._pending
        head = self._head
        if head >= len(pending):
            return
        if pending[head] == offset:
            self._head = head + 1
            if self._finished:
                self._drain()
            else:
                self._compact()
        elif offset > pending[head]:
            i = bisect_left(pending, offset, head)
            if i < len(pending) and pending[i] == offset:
                self._finished.add(offset)

    def done_range(self, start: int, stop: int) -> None:
        """Offsets ``start .. stop - 1`` are finished: a partition's chunk of contiguous offsets
        that ran in order. When they are the next unfinished offsets (the usual case) this is
        two comparisons and a head move, whatever their number."""
        n = stop - start
        if n <= 0:
            return
        pending = self._pending
        head = self._head
        end = head + n - 1
        # Received offsets strictly increase, so n entries from the head that begin at start
        # and end at stop - 1 are exactly start .. stop - 1.
        if end < len(pending) and pending[head] == start and pending[end] == stop - 1:
            self._head = head + n
            if self._finished:
                self._drain()
            else:
                self._compact()
            return
        self.done_many(list(range(start, stop)))

    def done_many(self, offsets: Sequence[int] | Iterable[int]) -> None:
        """``done`` each of ``offsets``; a run that is exactly the next unfinished offsets (a
        chunk finishing in order) costs one comparison of lists, and a ``range`` one
        ``done_range``."""
        if type(offsets) is range and offsets.step == 1:
            self.done_range(offsets.start, offsets.stop)
            return
        if not isinstance(offsets, list):
            offsets = list(offsets)
        k = len(offsets)
        head = self._head
        if k and self._pending[head:head + k] == offsets:
            self._head = head + k
            if self._finished:
                self._drain()
            else:
                self._compact()
            return
        for offset in offsets:
            self.done(offset)

    def _drain(self) -> None:
        # Finished offsets now at the head join the watermark.
        pending, finished, head = self._pending, self._finished, self._head
        n = len(pending)
        while head < n and pending[head] in finished:
            finished.discard(pending[head])
            head += 1
        self._head = head
        self._compact()

    def _compact(self) -> None:
        head = self._head
        if head >= _COMPACT_AT and head * 2 >= len(self._pending):
            del self._pending[:head]
            self._head = 0

    def commit_position(self) -> int | None:
        """Offset to commit: the lowest unfinished offset, or last received + 1 when all are
        finished; None when nothing was ever received."""
        if self._head < len(self._pending):
            return self._pending[self._head]
        return None if self._last is None else self._last + 1

    @property
    def in_flight(self) -> int:
        """Records received and not finished."""
        return len(self._pending) - self._head - len(self._finished)

    @property
    def span(self) -> int:
        """Records received at or above the commit position (finished or not): what a crash
        would run again, and what this tracker holds."""
        return len(self._pending) - self._head

    @property
    def last(self) -> int | None:
        return self._last


def _increasing(offsets: Sequence[int]) -> bool:
    # Cheap exact check for the common case: consecutive offsets (no gaps).
    if len(offsets) < 2:
        return True
    if offsets[-1] - offsets[0] == len(offsets) - 1:
        return list(offsets) == list(range(offsets[0], offsets[-1] + 1))
    return all(a < b for a, b in pairwise(offsets))
