"""PartitionTracker: the commit position is the lowest unfinished offset (contiguous
watermark), whatever order jobs finish in."""

from __future__ import annotations

import random

import pytest

from streamjobs.worker.offsets import PartitionTracker


def test_empty_tracker_has_no_position() -> None:
    assert PartitionTracker().commit_position() is None


def test_in_order_completion_advances_to_last_plus_one() -> None:
    t = PartitionTracker()
    t.add_many([5, 6, 7])
    assert t.commit_position() == 5
    t.done(5)
    assert t.commit_position() == 6
    t.done_many([6, 7])
    assert t.commit_position() == 8
    assert t.in_flight == 0


def test_out_of_order_completion_commits_only_contiguous_prefix() -> None:
    t = PartitionTracker()
    t.add_many([10, 11, 12, 13])
    t.done(12)
    t.done(13)
    assert t.commit_position() == 10  # 10 and 11 still running
    t.done(10)
    assert t.commit_position() == 11
    assert t.in_flight == 1
    t.done(11)
    assert t.commit_position() == 14


def test_gaps_in_offsets_are_fine() -> None:
    # Compaction and transaction markers leave gaps: the position jumps over them.
    t = PartitionTracker()
    t.add_many([3, 7, 20])
    t.done(7)
    assert t.commit_position() == 3
    t.done(3)
    assert t.commit_position() == 20
    t.done(20)
    assert t.commit_position() == 21


def test_unknown_and_repeated_done_are_ignored() -> None:
    t = PartitionTracker()
    t.add_many([1, 2])
    t.done(99)
    t.done(0)
    t.done(2)
    t.done(2)
    assert t.commit_position() == 1
    t.done(1)
    assert t.commit_position() == 3


def test_offsets_must_increase() -> None:
    t = PartitionTracker()
    t.add(4)
    with pytest.raises(ValueError):
        t.add(4)


def test_random_completion_order_matches_reference() -> None:
    rng = random.Random(7)
    offsets = sorted(rng.sample(range(1000), 200))
    t = PartitionTracker()
    t.add_many(offsets)
    finished: set[int] = set()
    for o in rng.sample(offsets, len(offsets)):
        t.done(o)
        finished.add(o)
        expected = next((x for x in offsets if x not in finished), offsets[-1] + 1)
        assert t.commit_position() == expected
