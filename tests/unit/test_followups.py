"""The follow-up bookkeeping (``_worker/followups.py``) without Kafka: when a parent's offset
counts as finished."""

from __future__ import annotations

from typing import Any

import pytest

from streamjobs import _headers as h
from streamjobs._worker.context import JobContext
from streamjobs._worker.followups import FollowUps
from streamjobs._worker.outbox import Outgoing
from streamjobs.errors import NotInWorker


class _Part:
    gone = False


class _Outbox:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def send(self, out: Outgoing) -> None:
        self.sent.append(out)


def _followups(transactional: bool = False) -> tuple[FollowUps, _Outbox, list[tuple[Any, int]]]:
    outbox = _Outbox()
    finished: list[tuple[Any, int]] = []
    f = FollowUps(outbox, lambda part, offset: finished.append((part, offset)),
                  lambda: None,  # type: ignore[arg-type, return-value]
                  transactional=transactional)
    return f, outbox, finished


def _handed(f: FollowUps, part: Any, offset: int, n: int = 1,
            statuses: list[int] | None = None) -> None:
    seen = statuses if statuses is not None else []
    for _ in range(n):
        f._inbox.append((part, offset, "t", None, b"v", [(h.PARENT_ID, b"p")],
                         lambda: seen.append(offset)))


def test_parent_finishes_with_its_last_followup_ack() -> None:
    """Rule: a parent offset with follow-ups is held back from the finished offsets until
    the last of them is acknowledged; the others finish at once."""
    f, outbox, finished = _followups()
    part = _Part()
    _handed(f, part, 5, n=2)
    f.take(lambda where: None)
    assert len(outbox.sent) == 2
    assert list(f.gate(part, [4, 5, 6])) == [4, 6]
    outbox.sent[0].on_ack()
    assert finished == []
    outbox.sent[1].on_ack()
    assert finished == [(part, 5)]
    assert f.pending == {}


def test_failed_parent_waits_for_followups_too() -> None:
    """Rule: a failed parent (finished when its retry record is acknowledged) still waits for
    its follow-ups; one acknowledged first finishes with its retry record."""
    f, outbox, finished = _followups()
    part = _Part()
    _handed(f, part, 7)
    f.take(lambda where: None)
    assert f.holds(part, 7)
    outbox.sent[0].on_ack()
    assert finished == [(part, 7)]
    assert not f.holds(part, 7)


def test_followups_of_a_gone_partition_are_dropped() -> None:
    """Rule: a follow-up handed over after its partition was revoked is not sent (the parent
    runs again where the partition went)."""
    f, outbox, _ = _followups()
    part = _Part()
    part.gone = True
    _handed(f, part, 1)
    f.take(lambda where: None)
    assert outbox.sent == [] and f.pending == {}


def test_transactional_followups_wait_for_the_watermark() -> None:
    """Rule: exactly-once holds records per parent and releases only those of parents below
    the watermark, in offset order; their parents' offsets are never held back."""
    f, outbox, _ = _followups(transactional=True)
    part = _Part()
    _handed(f, part, 3)
    _handed(f, part, 1)
    _handed(f, part, 9)
    f.take(lambda where: None)
    assert outbox.sent == []
    assert list(f.gate(part, [1, 3, 9])) == [1, 3, 9]
    assert [o for o in f.held[part]] == [3, 1, 9]
    assert len(f.release(part, 4)) == 2
    assert list(f.held[part]) == [9]


def test_emit_outside_a_worker_raises() -> None:
    """Rule: ``ctx.emit`` outside a worker's handler raises ``NotInWorker``."""
    ctx = JobContext.__new__(JobContext)
    with pytest.raises(NotInWorker):
        ctx.emit("x", {})


def test_emitted_status_is_written_once_the_followup_is_acknowledged() -> None:
    """Rule: at-least-once, a follow-up's ``emitted`` status is written when the broker
    acknowledged the follow-up, not when the handler emitted it."""
    f, outbox, _ = _followups()
    part = _Part()
    statuses: list[int] = []
    _handed(f, part, 5, statuses=statuses)
    f.take(lambda where: None)
    assert statuses == []
    outbox.sent[0].on_ack()
    assert statuses == [5]


def test_transactional_followups_carry_their_status_to_the_commit() -> None:
    """Rule: exactly-once, a held follow-up's status is not written when it is taken or
    released, only by its ``on_commit`` (run by the transaction that committed it)."""
    f, _, _ = _followups(transactional=True)
    part = _Part()
    statuses: list[int] = []
    _handed(f, part, 2, statuses=statuses)
    f.take(lambda where: None)
    (out,) = f.release(part, 3)
    out.on_ack()  # delivered inside the transaction: not yet committed
    assert statuses == []
    assert out.on_commit is not None
    out.on_commit()
    assert statuses == [2]


class _FullQueueEncoder:
    """The follow-up encoder's side of an ``emitted`` status: a produce call that finds the
    local queue full ``full`` times (BufferError) before it takes the record."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.written: list[str] = []

    def _emitted_write(self, job_type: str, rec: Any) -> Any:
        def write() -> None:
            if self.full:
                self.full -= 1
                raise BufferError("queue full")
            self.written.append(rec[4])

        return write


def test_emitted_status_never_waits_for_a_full_queue() -> None:
    """Rule: the poll thread never waits for room for a follow-up's ``emitted`` status: a
    full local queue keeps it (and those after it, in order) for the next loop turns."""
    f, _, _ = _followups()
    enc = _FullQueueEncoder(full=3)  # a's try, a's try again when b comes, the first turn
    f._record_emitted(enc, "t", ("t", None, b"v", [], "a", 1, 0))  # type: ignore[arg-type]
    f._record_emitted(enc, "t", ("t", None, b"v", [], "b", 1, 0))  # type: ignore[arg-type]
    assert enc.written == []  # returned at once, nothing written yet
    f.take(lambda where: None)  # the queue is still full once
    assert enc.written == []
    f.take(lambda where: None)
    assert enc.written == ["a", "b"]
    f.take(lambda where: None)
    assert enc.written == ["a", "b"]


def test_emitted_statuses_held_back_get_a_last_chance_at_close() -> None:
    """Rule: on shutdown the statuses a full queue held back are written if room comes
    within the close timeout (they are not lost with the loop)."""
    f, _, _ = _followups()
    enc = _FullQueueEncoder(full=3)
    f._record_emitted(enc, "t", ("t", None, b"v", [], "a", 1, 0))  # type: ignore[arg-type]
    f.close(timeout=5)
    assert enc.written == ["a"]
