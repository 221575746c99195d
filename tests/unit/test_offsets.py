"""PartitionTracker: the commit position is the lowest unfinished offset (contiguous
watermark), whatever order jobs finish in."""

from __future__ import annotations

import random

import pytest

from streamjobs._worker.offsets import PartitionTracker


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


def test_a_contiguous_chunk_finishes_as_one_range() -> None:
    t = PartitionTracker()
    t.add_many(range(100, 1100))
    t.done_range(100, 600)
    assert t.commit_position() == 600 and t.in_flight == 500
    t.done_many(range(600, 1100))  # a range given to done_many takes the same path
    assert t.commit_position() == 1100 and t.in_flight == 0


def test_a_range_behind_an_unfinished_offset_waits_for_it() -> None:
    t = PartitionTracker()
    t.add_many([0, 1, 2, 3, 4, 5, 6])
    t.done_range(2, 7)  # 0 and 1 still run (e.g. the chunk before, or a retry in flight)
    assert t.commit_position() == 0 and t.in_flight == 2
    t.done(1)
    assert t.commit_position() == 0
    t.done(0)
    assert t.commit_position() == 7 and t.in_flight == 0


def test_a_range_over_a_gap_is_not_taken_for_the_received_offsets() -> None:
    # Received 10, 11, 13 (12 was a transaction marker or compacted away): a range 10..13
    # does not match the three received offsets one to one, so they finish one by one.
    t = PartitionTracker()
    t.add_many([10, 11, 13])
    t.done_range(10, 14)
    assert t.commit_position() == 14 and t.in_flight == 0
    t2 = PartitionTracker()
    t2.add_many([10, 11, 13])
    t2.done_range(10, 12)
    assert t2.commit_position() == 13 and t2.in_flight == 1


def test_empty_and_unknown_ranges_are_ignored() -> None:
    t = PartitionTracker()
    t.done_range(0, 5)
    assert t.commit_position() is None
    t.add_range(3, 6)
    t.done_range(7, 7)
    t.done_range(50, 60)
    assert t.commit_position() == 3 and t.in_flight == 3


def test_add_range_must_follow_the_last_offset() -> None:
    t = PartitionTracker()
    t.add_range(0, 10)
    with pytest.raises(ValueError):
        t.add_range(5, 20)
    t.add_many(range(10, 12))
    assert t.last == 11 and t.in_flight == 12


def test_random_ranges_and_singles_match_reference() -> None:
    rng = random.Random(7)
    for _ in range(200):
        t = PartitionTracker()
        offsets = sorted(rng.sample(range(200), rng.randint(1, 60)))
        t.add_many(offsets)
        # Finish in random pieces: contiguous index runs as ranges of their offsets (which
        # over a gap of offsets cover more than was received), the rest one by one.
        finished: set[int] = set()
        order = list(range(len(offsets)))
        rng.shuffle(order)
        for i in order:
            if offsets[i] in finished:
                continue
            j = min(len(offsets), i + rng.randint(1, 5))
            run = [o for o in offsets[i:j] if o not in finished]
            if run and run == offsets[i:i + len(run)] and rng.random() < 0.5:
                t.done_range(run[0], run[-1] + 1)
                finished.update(o for o in offsets if run[0] <= o <= run[-1])
            else:
                t.done(offsets[i])
                finished.add(offsets[i])
            lowest = next((o for o in offsets if o not in finished), None)
            assert t.commit_position() == (offsets[-1] + 1 if lowest is None else lowest)
            assert t.in_flight == len(offsets) - len(finished)
